//! Tests of the artifact store on a disk that fills up: uploads refused before their bytes
//! when they cannot fit, a write that finds the disk full, the staging of dead attempts.

use super::*;

fn key(attempt: u32) -> AttemptKey {
    AttemptKey {
        job_id: "j1".into(),
        task_id: "extract".into(),
        attempt,
    }
}

fn header(name: &str, size: u64) -> UploadHeader {
    UploadHeader {
        name: name.into(),
        size,
        sha256: String::new(),
    }
}

fn open(dir: &Path, reserve: u64) -> Arc<Artifacts> {
    Arc::new(Artifacts::open_with_reserve(&dir.join("artifacts"), u64::MAX, Some(reserve)).unwrap())
}

#[tokio::test]
async fn an_upload_that_cannot_fit_is_refused_before_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    // A reserve larger than any disk here: nothing fits.
    let store = open(dir.path(), u64::MAX / 4);
    let Err(err) = store.begin(key(1), header("big.bin", 5 << 20)).await else {
        panic!("accepted");
    };
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::NoSpace { .. }), "{text}");
    assert!(
        text.starts_with("the controller's data directory has ")
            && text.contains(" MiB in reserve: output big.bin (5.0 MiB) does not fit"),
        "{text}"
    );
    assert!(
        !store.staging_dir(&key(1)).exists(),
        "nothing is created for a refused upload"
    );
    assert_eq!(store.received(&key(1), "big.bin").await.unwrap(), 0);
}

#[tokio::test]
async fn an_upload_that_fits_is_accepted_and_its_promise_withdrawn_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let data = vec![1u8; 4096];
    let mut up = store
        .begin(key(1), header("out", data.len() as u64))
        .await
        .unwrap();
    up.write(0, data.clone(), crc32c::crc32c(&data))
        .await
        .unwrap();
    assert_eq!(up.finish().await.unwrap(), 4096);
    assert_eq!(store.space.in_flight(), (0, 0));
}

#[tokio::test]
async fn a_write_that_finds_the_disk_full_removes_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    // Writes to the staged file go to /dev/full: ENOSPC, as on a full disk.
    let staged = store.staging_dir(&key(1)).join("out");
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", &staged).unwrap();
    let data = vec![2u8; 1 << 20];
    let mut up = store
        .begin(key(1), header("out", data.len() as u64))
        .await
        .unwrap();
    let err = up
        .write(0, data.clone(), crc32c::crc32c(&data))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::NoSpace { .. }), "{text}");
    assert!(text.contains("output out (1.0 MiB) does not fit"), "{text}");
    assert!(
        std::fs::symlink_metadata(&staged).is_err(),
        "the partial file is removed"
    );
    assert_eq!(store.received(&key(1), "out").await.unwrap(), 0);
    // The store goes on: another attempt's upload is received.
    let mut other = store
        .begin(key(2), header("out", data.len() as u64))
        .await
        .unwrap();
    other
        .write(0, data.clone(), crc32c::crc32c(&data))
        .await
        .unwrap();
    assert_eq!(other.finish().await.unwrap(), data.len() as u64);
}

#[tokio::test]
async fn staging_left_by_an_earlier_process_is_removed_by_remove_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let data = vec![3u8; 100];
    let mut up = store
        .begin(key(1), header("out", data.len() as u64))
        .await
        .unwrap();
    up.write(0, data.clone(), crc32c::crc32c(&data))
        .await
        .unwrap();
    up.finish().await.unwrap();
    // A restart: this process has no state of that upload.
    let restarted = open(dir.path(), 0);
    assert_eq!(restarted.staged_attempts().await.unwrap(), vec![key(1)]);
    restarted.remove_staging(&key(1)).await.unwrap();
    assert!(restarted.staged_attempts().await.unwrap().is_empty());
    assert!(!restarted.staging_dir(&key(1)).exists());
}
