//! Unit tests of the output upload: chunking, resume offsets, hashing, and whole uploads
//! against the fake controller (`testing::Fake`).

use std::{fs::File, io, time::Duration};

use sha2::{Digest, Sha256};

use super::reader::{chunk_len, hash_range, make_chunk, read_chunk};
use super::*;
use crate::{outputs, testing::Fake, transfer::hex};

#[test]
fn chunks_cover_the_file_and_carry_crc32c() {
    assert_eq!(
        chunk_len(0, 0),
        0,
        "an empty file is one message without data"
    );
    let size = 2 * CHUNK as u64 + 123;
    let lens: Vec<usize> = (0..3).map(|i| chunk_len(i * CHUNK as u64, size)).collect();
    assert_eq!(lens, [CHUNK, CHUNK, 123]);
    assert_eq!(
        chunk_len(size, size),
        0,
        "a file held whole: the header alone"
    );
    let c = make_chunk(None, 7, b"123456789".to_vec(), String::new());
    // The CRC32C (Castagnoli) check value.
    assert_eq!(c.crc32c, 0xE306_9283);
    assert_eq!(c.offset, 7);
    assert_eq!(make_chunk(None, 0, Vec::new(), String::new()).crc32c, 0);
}

#[test]
fn chunks_are_read_at_their_offset_whatever_the_files_position() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3 * CHUNK + 77).map(|i| (i % 253) as u8).collect();
    let mut file = File::create_new(dir.path().join("f")).unwrap();
    file.write_all(&data).unwrap();
    let file = File::open(dir.path().join("f")).unwrap();
    // Another reader moving the shared position changes nothing.
    (&file).seek(SeekFrom::Start(12345)).unwrap();
    for (at, len) in [
        (0, CHUNK),
        (CHUNK as u64 + 5, CHUNK),
        (3 * CHUNK as u64, 77),
    ] {
        let chunk = read_chunk(&file, at, len).unwrap();
        assert!(chunk == data[at as usize..at as usize + len], "at {at}");
    }
    let err = read_chunk(&file, 3 * CHUNK as u64, 78).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn resume_offsets() {
    // The controller holds a prefix: resume there, never from 0.
    assert_eq!(
        next_offset(0, 5 << 20, 8 << 20),
        Resume::From {
            offset: 5 << 20,
            progress: true
        }
    );
    // It holds less than where the last stream started (it lost an unsynced tail).
    assert_eq!(
        next_offset(5 << 20, 4 << 20, 8 << 20),
        Resume::From {
            offset: 4 << 20,
            progress: false
        }
    );
    assert_eq!(
        next_offset(8 << 20, 8 << 20, 8 << 20),
        Resume::From {
            offset: 8 << 20,
            progress: false
        }
    );
    assert!(matches!(next_offset(0, 9, 8), Resume::Invalid(_)));
}

/// SHA-256 of the first `size` bytes of `file`, through `hash_range` in two pieces.
fn hash_prefix(file: &File, size: u64, stop: &CancellationToken) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let half = size / 2;
    assert!(hash_range(&mut hasher, file, 0, half, stop)?);
    assert!(hash_range(&mut hasher, file, half, size, stop)?);
    Ok(hex(&hasher.finalize()))
}

#[test]
fn hashes_known_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let never = CancellationToken::new();
    std::fs::write(&path, b"abc").unwrap();
    let file = File::open(&path).unwrap();
    assert_eq!(
        hash_prefix(&file, 3, &never).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    std::fs::write(&path, b"").unwrap();
    let file = File::open(&path).unwrap();
    assert_eq!(
        hash_prefix(&file, 0, &never).unwrap(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let file = File::open(&path).unwrap();
    assert!(
        hash_prefix(&file, 1, &never).is_err(),
        "a short file is an error"
    );
    let stopped = CancellationToken::new();
    stopped.cancel();
    let mut hasher = Sha256::new();
    assert!(!hash_range(&mut hasher, &file, 0, 1, &stopped).unwrap());
}

fn attempt() -> AttemptRef {
    AttemptRef {
        job_id: "j".into(),
        task_id: "t".into(),
        attempt: 1,
    }
}

/// Files of these sizes (bytes derived from their position), resolved as outputs.
fn files(sizes: &[(&str, usize)]) -> (tempfile::TempDir, Vec<Output>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let mut contents = Vec::new();
    for (name, size) in sizes {
        let data: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join(name), &data).unwrap();
        contents.push(data);
    }
    let names: Vec<String> = sizes.iter().map(|(n, _)| (*n).to_owned()).collect();
    let outputs = outputs::resolve(dir.path(), &names, u64::MAX).unwrap();
    (dir, outputs, contents)
}

#[tokio::test]
async fn uploads_whole_files_in_chunks() {
    let fake = Fake::default();
    let client = fake.start().await;
    let (_dir, outs, data) = files(&[("a.bin", 0), ("b.bin", 5), ("c.bin", 2 * CHUNK + 17)]);
    let done = upload_all(&client, &attempt(), &KillSwitch::default(), &outs)
        .await
        .unwrap();
    let st = fake.state();
    let names: Vec<&str> = done.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a.bin", "b.bin", "c.bin"]);
    for (out, data) in done.iter().zip(&data) {
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(out.sha256, crate::testing::sha256_hex(data));
        assert_eq!(&st.uploads[&out.name], data);
        assert_eq!(st.finished[&out.name], out.sha256);
    }
    assert_eq!(st.stream_starts, [0, 0, 0], "one stream per file");
    assert_eq!(st.status_calls, 0);
}

#[tokio::test]
async fn interrupted_upload_resumes_from_what_the_controller_holds() {
    let fake = Fake::default();
    fake.state().faults.cut_upload_at = Some(CHUNK as u64 + 1);
    let client = fake.start().await;
    let (_dir, outs, data) = files(&[("big.bin", 3 * CHUNK + 5)]);
    let done = upload_all(&client, &attempt(), &KillSwitch::default(), &outs)
        .await
        .unwrap();
    let st = fake.state();
    assert_eq!(st.stream_starts, [0, 2 * CHUNK as u64]);
    assert_eq!(st.status_calls, 1);
    assert_eq!(st.uploads["big.bin"], data[0]);
    assert_eq!(done[0].sha256, crate::testing::sha256_hex(&data[0]));
}

#[tokio::test]
async fn damaged_chunk_is_sent_again() {
    let fake = Fake::default();
    fake.state().faults.damage_at = Some(CHUNK as u64);
    let client = fake.start().await;
    let (_dir, outs, data) = files(&[("big.bin", 2 * CHUNK + 5)]);
    upload_all(&client, &attempt(), &KillSwitch::default(), &outs)
        .await
        .unwrap();
    let st = fake.state();
    assert_eq!(st.stream_starts, [0, CHUNK as u64]);
    assert_eq!(st.uploads["big.bin"], data[0]);
}

#[tokio::test]
async fn fenced_upload_stops_and_refused_upload_fails() {
    let fake = Fake::default();
    fake.state().faults.fenced = true;
    let client = fake.start().await;
    let (_dir, outs, _) = files(&[("a.bin", 10)]);
    let r = upload_all(&client, &attempt(), &KillSwitch::default(), &outs).await;
    assert_eq!(r, Err(Stop::Aborted));

    let fake = Fake::default();
    fake.state().faults.limit = Some(5);
    let client = fake.start().await;
    let r = upload_all(&client, &attempt(), &KillSwitch::default(), &outs).await;
    assert_eq!(
        r,
        Err(Stop::Failed(
            "output a.bin is over the controller's limit".into()
        ))
    );
}

#[tokio::test]
async fn unreachable_controller_is_retried_until_the_attempt_stops() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cli = crate::config::Cli {
        controllers: vec![format!("http://127.0.0.1:{port}")],
        ..Default::default()
    };
    let client = Client::new(&crate::config::Config::load_from(cli, Vec::new()).unwrap()).unwrap();
    let (_dir, outs, _) = files(&[("a.bin", 10)]);
    let kill = KillSwitch::default();
    let abort = kill.abort.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        abort.cancel();
    });
    let r = upload_all(&client, &attempt(), &kill, &outs).await;
    assert_eq!(r, Err(Stop::Aborted));
}
