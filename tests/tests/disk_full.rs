//! A task output larger than the controller's free disk: the controller keeps its disk
//! reserve, refuses the upload before taking its bytes, and the attempt fails naming the
//! figures; the controller goes on answering, a small job still succeeds, nothing stays
//! staged. The controller's data directory is a 64 MiB filesystem of the test's own (a tmpfs,
//! or an ext4 image on a loop device), so this test needs root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ferry_proto::v1::{UploadChunk, UploadHeader};
use ferry_tests::{
    eventually,
    job::{state, task_state},
    results_fixture::{files_under, last_error},
    Agent, AgentOpts, Controller, ControllerOpts, FakeAgent, TestDir,
};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

const JOB_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
/// `--disk-reserve` of the controller.
const RESERVE: u64 = 8 * MIB;

/// A small filesystem mounted for the test, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    /// The loop device's image, when tmpfs could not be mounted.
    _image: Option<PathBuf>,
    _dir: TestDir,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl SmallDisk {
    /// A 64 MiB tmpfs, or else a 64 MiB ext4 image on a loop device; panics naming both
    /// failures when neither can be mounted (the test needs root).
    fn mount() -> Self {
        let dir = TestDir::new("small-disk").unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let at = mount.to_str().unwrap();
        let tmpfs = run("mount", &["-t", "tmpfs", "-o", "size=64m", "tmpfs", at]);
        let Err(tmpfs) = tmpfs else {
            return Self {
                mount,
                _image: None,
                _dir: dir,
            };
        };
        let image = dir.path().join("disk.img");
        let img = image.to_str().unwrap();
        let ext4 = run("truncate", &["-s", "64M", img])
            .and_then(|()| run("mkfs.ext4", &["-q", "-F", img]))
            .and_then(|()| run("mount", &["-o", "loop", img, at]));
        if let Err(ext4) = ext4 {
            panic!(
                "this test needs a small filesystem of its own (run it as root): \
                 mounting a tmpfs failed ({tmpfs}), and so did a loop device ({ext4})"
            );
        }
        Self {
            mount,
            _image: Some(image),
            _dir: dir,
        }
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = run("umount", &["-l", self.mount.to_str().unwrap_or_default()]) {
            eprintln!("unmounting the test's small disk: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_larger_than_the_free_disk_fails_its_attempt_and_nothing_else() {
    let disk = SmallDisk::mount();
    let data = disk.path().join("data");
    let controller = Controller::start(
        ControllerOpts::default()
            .data_dir(&data)
            .arg("--disk-reserve")
            .arg(RESERVE.to_string()),
    )
    .await
    .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-disk").queue("disk"),
    )
    .await
    .unwrap();
    let cli = controller.cli();

    // 100 MiB: more than the whole disk.
    let big = r#"
name = "too-big"

[[tasks]]
id = "produce"
queue = "disk"
retry = { max_attempts = 1 }
outputs = ["big.bin"]
shell = "head -c 104857600 /dev/zero > big.bin"
"#;
    let id = cli.submit(big).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(task_state(&done, "produce"), "failed", "{done:#}");
    let error = last_error(&done, "produce");
    assert!(
        error.contains("the controller's data directory has ")
            && error.contains(" MiB free")
            && error.contains("keeps 8.0 MiB in reserve")
            && error.contains("output big.bin (100.0 MiB) does not fit"),
        "{error}"
    );

    // Nothing staged is left, and the controller answers and runs the next job.
    let staging = data.join("artifacts/staging");
    assert!(
        !staging.exists() || files_under(&staging).is_empty(),
        "staged files left: {:?}",
        files_under(&staging)
    );
    let small = r#"
name = "small"

[[tasks]]
id = "produce"
queue = "disk"
retry = { max_attempts = 1 }
outputs = ["small.bin"]
shell = "head -c 1048576 /dev/urandom > small.bin"
"#;
    let small_id = cli.submit(small).await.unwrap();
    let done = cli.wait_job(&small_id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert!(
        data.join("artifacts/published")
            .join(&small_id)
            .join("produce/1/small.bin")
            .is_file(),
        "the small output is published"
    );
    assert!(
        !staging.exists() || files_under(&staging).is_empty(),
        "staged files left: {:?}",
        files_under(&staging)
    );
    // The failed job is still shown, from a store that could write its end.
    let shown = cli.show(&id).await.unwrap();
    assert_eq!(state(&shown), "failed", "{shown:#}");
}

/// An output that fits the disk but not beside the reserve is refused too: the reserve is
/// kept for the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_would_eat_into_the_reserve_is_refused() {
    let disk = SmallDisk::mount();
    let data = disk.path().join("data");
    let controller = Controller::start(
        ControllerOpts::default()
            .data_dir(&data)
            .arg("--disk-reserve")
            .arg((40 * MIB).to_string()),
    )
    .await
    .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-disk").queue("disk"),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    // 30 MiB on a 64 MiB disk with 40 MiB kept free.
    let job = r#"
name = "into-the-reserve"

[[tasks]]
id = "produce"
queue = "disk"
retry = { max_attempts = 1 }
outputs = ["mid.bin"]
shell = "head -c 31457280 /dev/zero > mid.bin"
"#;
    let id = cli.submit(job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = last_error(&done, "produce");
    assert!(
        error.contains("keeps 40.0 MiB in reserve: output mid.bin (30.0 MiB) does not fit"),
        "{error}"
    );
    let staging = data.join("artifacts/staging");
    assert!(
        !staging.exists() || files_under(&staging).is_empty(),
        "staged files left: {:?}",
        files_under(&staging)
    );
}

/// CRC32C (Castagnoli) of `data`, as `UploadChunk.crc32c` carries it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Bytes free on the filesystem holding `path`, by `df`.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "df: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// The disk fills up under an upload that was accepted (someone else's file): its next chunk
/// is refused naming the figures, its partial file is removed, the controller answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_under_an_upload_stops_it_at_its_next_chunk() {
    let disk = SmallDisk::mount();
    let data = disk.path().join("data");
    let controller = Controller::start(
        ControllerOpts::default()
            .data_dir(&data)
            .agent_timeout(Duration::from_secs(60))
            .arg("--disk-reserve")
            .arg(RESERVE.to_string()),
    )
    .await
    .unwrap();
    let fake = FakeAgent::register(controller.agent_client().await.unwrap(), "fake", "disk")
        .await
        .unwrap();
    let cli = controller.cli();
    let job = r#"
name = "filled-under"

[[tasks]]
id = "produce"
queue = "disk"
retry = { max_attempts = 1 }
outputs = ["out.bin"]
shell = "true"
"#;
    let id = cli.submit(job).await.unwrap();
    let attempt = fake.claim_one(JOB_TIMEOUT).await.unwrap().attempt.unwrap();

    // 40 MiB declared (it fits), its first MiB sent.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = {
        let mut agents = fake.client.clone();
        tokio::spawn(async move { agents.upload_output(ReceiverStream::new(rx)).await })
    };
    let chunk = vec![0u8; MIB as usize];
    tx.send(UploadChunk {
        header: Some(UploadHeader {
            agent: Some(fake.identity.clone()),
            attempt: Some(attempt.clone()),
            name: "out.bin".into(),
            size: 40 * MIB,
            sha256: String::new(),
        }),
        offset: 0,
        crc32c: crc32c(&chunk),
        data: chunk.clone().into(),
        sha256: String::new(),
    })
    .await
    .unwrap();
    let staged = data
        .join("artifacts/staging")
        .join(&id)
        .join("produce/1/out.bin");
    eventually("the first chunk to be staged", JOB_TIMEOUT, || async {
        Ok((std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0) == MIB).then_some(()))
    })
    .await
    .unwrap();

    // Someone else takes all but 4 MiB of the disk.
    let filler = disk.path().join("filler");
    let take = free_bytes(disk.path()) - 4 * MIB;
    if run(
        "fallocate",
        &["-l", &take.to_string(), filler.to_str().unwrap()],
    )
    .is_err()
    {
        std::fs::write(&filler, vec![1u8; take as usize]).unwrap();
    }

    tx.send(UploadChunk {
        header: None,
        offset: MIB,
        crc32c: crc32c(&chunk),
        data: chunk.clone().into(),
        sha256: String::new(),
    })
    .await
    .ok();
    drop(tx);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("the controller's data directory has ")
            && message.contains("keeps 8.0 MiB in reserve: output out.bin (40.0 MiB) does not fit"),
        "{message}"
    );
    assert!(!staged.exists(), "the partial file is removed");

    // The controller still answers; nothing is left staged.
    cli.jobs().await.unwrap();
    std::fs::remove_file(&filler).unwrap();
    let staging = data.join("artifacts/staging");
    assert!(
        files_under(&staging).is_empty(),
        "staged files left: {:?}",
        files_under(&staging)
    );
}
