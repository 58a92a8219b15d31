//! Tests of the data-directory artifact store.

use super::*;
use sha2::{Digest, Sha256};

fn key(attempt: u32) -> AttemptKey {
    AttemptKey {
        job_id: "j1".into(),
        task_id: "extract".into(),
        attempt,
    }
}

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn header(name: &str, data: &[u8]) -> UploadHeader {
    UploadHeader {
        name: name.into(),
        size: data.len() as u64,
        sha256: sha(data),
    }
}

fn open(dir: &Path, limit: u64) -> Arc<Artifacts> {
    Arc::new(Artifacts::open(&dir.join("artifacts"), limit).unwrap())
}

#[test]
fn names_must_stay_inside_the_working_directory() {
    for ok in [
        "out.csv",
        "sub/dir/out.csv",
        "a..b",
        ".hidden",
        "with space",
    ] {
        check_name(ok).unwrap();
    }
    for (bad, problem) in [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../up", "'..'"),
        ("a/../../b", "'..'"),
        ("a\\b", "backslash"),
        ("a\0b", "NUL"),
        ("a//b", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("a/", "empty or '.'"),
    ] {
        let err = check_name(bad).unwrap_err().to_string();
        assert!(err.contains(problem), "{bad:?}: {err}");
        assert!(err.contains(&format!("{bad:?}")), "names the name: {err}");
    }
}

#[tokio::test]
async fn refuses_a_chunk_whose_crc_does_not_match_and_takes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    let data = b"hello, ferry".to_vec();
    let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
    let err = up
        .write(0, data.clone(), crc32c::crc32c(&data) ^ 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Crc { offset: 0, .. }), "{err}");
    assert_eq!(store.received(&key(1), "out").await.unwrap(), 0);
    up.write(0, data.clone(), crc32c::crc32c(&data))
        .await
        .unwrap();
    assert_eq!(up.finish().await.unwrap(), data.len() as u64);
}

#[tokio::test]
async fn chunks_must_start_at_the_staged_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    let data = vec![7u8; 100];
    let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
    up.write(0, data[..40].to_vec(), crc32c::crc32c(&data[..40]))
        .await
        .unwrap();
    for wrong in [0, 39, 41, 80] {
        let err = up
            .write(wrong, data[40..60].to_vec(), crc32c::crc32c(&data[40..60]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expected offset 40"), "{err}");
    }
    let err = up
        .write(40, vec![1; 61], crc32c::crc32c(&[1; 61]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::PastSize { .. }), "{err}");
    assert_eq!(up.finish().await.unwrap(), 40);
    assert_eq!(store.received(&key(1), "out").await.unwrap(), 40);
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart_from_the_staged_length() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let cut = 1_234_567;
    {
        let store = open(dir.path(), 1 << 30);
        let mut up = store
            .begin(key(2), header("sub/big.bin", &data))
            .await
            .unwrap();
        up.write(0, data[..cut].to_vec(), crc32c::crc32c(&data[..cut]))
            .await
            .unwrap();
        // The controller dies here: no finish, the in-memory state is gone.
    }
    let store = open(dir.path(), 1 << 30);
    assert_eq!(
        store.received(&key(2), "sub/big.bin").await.unwrap(),
        cut as u64
    );
    let mut up = store
        .begin(key(2), header("sub/big.bin", &data))
        .await
        .unwrap();
    assert_eq!(up.resumed_at(), cut as u64);
    up.write(
        cut as u64,
        data[cut..].to_vec(),
        crc32c::crc32c(&data[cut..]),
    )
    .await
    .unwrap();
    assert_eq!(up.finish().await.unwrap(), data.len() as u64);
    let declared = OutputFile {
        name: "sub/big.bin".into(),
        size: data.len() as u64,
        sha256: sha(&data),
    };
    store
        .verify(&key(2), std::slice::from_ref(&declared))
        .await
        .unwrap();
    let staged = std::fs::read(
        dir.path()
            .join("artifacts/staging/j1/extract/2/sub/big.bin"),
    );
    assert!(staged.unwrap() == data, "the staged file holds the data");
    // And a restart between the upload and the completion finds the file whole.
    let store = open(dir.path(), 1 << 30);
    store.verify(&key(2), &[declared]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_stream_declares_the_sha_its_completion_must_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30);
    let data: Vec<u8> = (0..(42 << 20) + 7).map(|i| (i % 251) as u8).collect();
    let unsigned = UploadHeader {
        sha256: String::new(),
        ..header("big", &data)
    };
    let mut up = store.begin(key(1), unsigned).await.unwrap();
    assert_eq!(up.resumed_at(), 0);
    let pipeline = up.pipeline();
    let mut chunks = data.chunks(1 << 20).enumerate().peekable();
    while let Some((i, chunk)) = chunks.next() {
        let last = chunks.peek().is_none();
        let declared = if last { sha(&data) } else { String::new() };
        let offset = (i << 20) as u64;
        let crc = crc32c::crc32c(chunk);
        assert!(pipeline.push(offset, chunk.to_vec(), crc, declared).await);
    }
    up.wrote(pipeline.close().await.unwrap());
    assert_eq!(up.finish().await.unwrap(), data.len() as u64);
    let completion = |sha256: String| OutputFile {
        name: "big".into(),
        size: data.len() as u64,
        sha256,
    };
    let err = store
        .verify(&key(1), &[completion(sha(b"other"))])
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Disagrees { .. }), "{err}");
    assert!(err.to_string().contains(&sha(&data)), "{err}");
    store
        .verify(&key(1), &[completion(sha(&data).to_uppercase())])
        .await
        .unwrap();
    let staged = std::fs::read(dir.path().join("artifacts/staging/j1/extract/1/big")).unwrap();
    assert!(staged == data, "the staged file holds the data");
}

#[tokio::test]
async fn a_pipeline_stops_at_a_damaged_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    let data = vec![3u8; 300];
    let mut h = header("out", &data);
    h.sha256 = String::new();
    let up = store.begin(key(1), h).await.unwrap();
    let pipeline = up.pipeline();
    let crc = crc32c::crc32c(&data[..100]);
    pipeline
        .push(0, data[..100].to_vec(), crc, String::new())
        .await;
    pipeline
        .push(100, data[100..200].to_vec(), crc ^ 1, String::new())
        .await;
    // Queued or refused: either way nothing past the damaged chunk is written.
    pipeline
        .push(200, data[200..].to_vec(), crc, String::new())
        .await;
    let err = pipeline.close().await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::Crc { offset: 100, .. }),
        "{err}"
    );
    assert_eq!(up.finish().await.unwrap(), 100);
}

#[tokio::test]
async fn outputs_of_an_attempt_share_one_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 10);
    let err = store
        .begin(key(1), header("big", &[0; 11]))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("limit of 10 bytes"), "{err}");
    let data = [1u8; 6];
    let mut up = store.begin(key(1), header("a", &data)).await.unwrap();
    up.write(0, data.to_vec(), crc32c::crc32c(&data))
        .await
        .unwrap();
    up.finish().await.unwrap();
    let err = store.begin(key(1), header("b", &data)).await.err().unwrap();
    assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");
    // Another attempt has its own budget.
    store.begin(key(2), header("b", &data)).await.unwrap();
}

#[tokio::test]
async fn verification_names_the_file_that_does_not_check_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    let data = b"0123456789".to_vec();
    let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
    up.write(0, data[..4].to_vec(), crc32c::crc32c(&data[..4]))
        .await
        .unwrap();
    up.finish().await.unwrap();
    let out = |name: &str, body: &[u8]| OutputFile {
        name: name.into(),
        size: body.len() as u64,
        sha256: sha(body),
    };
    let err = store
        .verify(&key(1), &[out("out", &data)])
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "output out: received 4 of 10 bytes");
    let err = store
        .verify(&key(1), &[out("missing", &data)])
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "output missing was not uploaded");
    let err = store
        .verify(&key(1), &[out("out", b"0124")])
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Disagrees { .. }), "{err}");
    let not_hex = OutputFile {
        sha256: "z".repeat(64),
        ..out("out", b"0123")
    };
    let err = store.verify(&key(1), &[not_hex]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "output out: sha256 {:?} is not 64 hex digits",
            "z".repeat(64)
        )
    );
    // A header with no SHA-256, and none on the stream's last chunk: the completion's counts.
    let mut h = header("other", b"0123");
    h.sha256 = String::new();
    let mut up = store.begin(key(1), h).await.unwrap();
    up.write(0, b"0123".to_vec(), crc32c::crc32c(b"0123"))
        .await
        .unwrap();
    up.finish().await.unwrap();
    store
        .verify(&key(1), &[out("other", b"0123")])
        .await
        .unwrap();
}

#[tokio::test]
async fn publication_moves_all_files_and_can_be_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    for name in ["a", "sub/b", "empty"] {
        let data = if name == "empty" {
            vec![]
        } else {
            name.as_bytes().to_vec()
        };
        let mut up = store.begin(key(1), header(name, &data)).await.unwrap();
        up.write(0, data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();
        up.finish().await.unwrap();
    }
    let published = |name: &str| store.published_path("j1", "extract", 1, name).unwrap();
    // Refused transaction that may be retried: back to staging, intact.
    store
        .publish(&key(1))
        .await
        .unwrap()
        .restore()
        .await
        .unwrap();
    assert!(!published("a").exists());
    assert_eq!(store.received(&key(1), "sub/b").await.unwrap(), 5);
    // Fenced: nothing stays.
    store
        .publish(&key(1))
        .await
        .unwrap()
        .remove()
        .await
        .unwrap();
    assert!(!published("a").exists());
    assert_eq!(store.received(&key(1), "a").await.unwrap(), 0);
}

#[tokio::test]
async fn a_reader_streams_from_an_offset_in_bounded_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 30);
    let data: Vec<u8> = (0..(READ_CHUNK * 2 + 10)).map(|i| i as u8).collect();
    let path = dir.path().join("f");
    std::fs::write(&path, &data).unwrap();
    let mut reader = store
        .reader(path.clone(), "f", 5, data.len() as u64)
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = reader.next().await {
        let (offset, bytes) = chunk.unwrap();
        assert_eq!(offset as usize, 5 + got.len());
        assert!(bytes.len() <= READ_CHUNK);
        got.extend(bytes);
    }
    assert_eq!(got, data[5..]);
    let err = store
        .reader(path, "f", data.len() as u64 + 1, data.len() as u64)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ArtifactError::PastEnd { .. }), "{err}");
}
