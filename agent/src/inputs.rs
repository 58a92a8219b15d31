//! Staging of an attempt's inputs (its dependencies' published outputs) under
//! `$FERRY_INPUTS/<task_id>/<name>` before its command starts: streamed with `FetchInput`,
//! resumed from the bytes written after a broken stream, size and SHA-256 verified.

use std::{
    collections::HashSet,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ferry_proto::v1::{AttemptRef, FetchInputRequest, ResultFile};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::{
    client::{Backoff, Client, FailureLog, TransferError},
    direct::Sink,
    outputs::INPUTS_DIR,
    running::KillSwitch,
    transfer::{hex, Stop},
};

/// A fetch that delivers nothing for this long is dropped and resumed.
const STALL: Duration = Duration::from_secs(60);

/// Where an input goes under `inputs`: `<task_id>/<name>`, or why it may not.
pub fn input_path(inputs: &Path, task_id: &str, name: &str) -> Result<PathBuf, String> {
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('\0');
    if bad(task_id) || task_id.contains('/') {
        return Err(format!("task id {task_id:?} cannot name a directory"));
    }
    if name.starts_with('/') {
        return Err("absolute names are not allowed".to_owned());
    }
    let mut path = inputs.join(task_id);
    for part in name.split('/') {
        if bad(part) {
            return Err(format!(
                "name {name:?} would leave inputs/{task_id}/ or has an empty part"
            ));
        }
        path.push(part);
    }
    Ok(path)
}

fn label(input: &ResultFile) -> String {
    format!("{}/{}", input.task_id, input.name)
}

/// Stages every input under `<dir>/inputs/`; creates that directory only when there are any.
pub(crate) async fn stage(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    dir: &Path,
    inputs: &[ResultFile],
) -> Result<(), Stop> {
    if inputs.is_empty() {
        return Ok(());
    }
    let root = dir.join(INPUTS_DIR);
    let mut seen = HashSet::new();
    let mut plan = Vec::with_capacity(inputs.len());
    for input in inputs {
        let path = input_path(&root, &input.task_id, &input.name)
            .map_err(|e| Stop::Final(format!("input {}: {e}", label(input))))?;
        if !seen.insert(path.clone()) {
            return Err(Stop::Final(format!(
                "input {} is listed twice",
                label(input)
            )));
        }
        plan.push((input, path));
    }
    let started = Instant::now();
    let mut bytes = 0;
    for (input, path) in plan {
        fetch_one(client, attempt, kill, input, &path).await?;
        bytes += input.size;
    }
    info!(
        inputs = inputs.len(),
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "inputs staged"
    );
    Ok(())
}

async fn fetch_one(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    input: &ResultFile,
    path: &Path,
) -> Result<(), Stop> {
    let what = label(input);
    let fail = |message: String| Stop::Failed(format!("input {what}: {message}"));
    let file = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            std::fs::create_dir_all(path.parent().expect("inside inputs/"))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("cannot create: {e}")))?
    };
    let sink = Sink {
        file,
        hasher: Sha256::new(),
        written: 0,
    };
    // With an object store, straight from there; otherwise streamed by the controller.
    let sink = match crate::direct::download(client, attempt, kill, input, sink).await? {
        Ok(done) => return verify(done, input).map_err(fail),
        Err(sink) => sink,
    };
    let mut sink = Some(sink);
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("fetch_input");
    loop {
        let written = sink.as_ref().map_or(0, |s| s.written);
        let req = FetchInputRequest {
            agent: None,
            attempt: Some(attempt.clone()),
            task_id: input.task_id.clone(),
            name: input.name.clone(),
            offset: written,
        };
        let opened = tokio::select! {
            r = client.fetch_input(req) => r,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        let failure = match opened {
            Err(e) => e,
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    m = stream.message() => m,
                    () = tokio::time::sleep(STALL) => break TransferError::Transient(
                        format!("no data for {}s", STALL.as_secs())
                    ),
                    () = kill.abort.cancelled() => return Err(Stop::Aborted),
                };
                let chunk = match next {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => {
                        let sink = sink.take().expect("kept between chunks");
                        return verify(sink, input).map_err(fail);
                    }
                    Err(status) => break TransferError::from_status(&status),
                };
                let mut s = sink.take().expect("kept between chunks");
                if chunk.offset != s.written {
                    return Err(fail(format!(
                        "the controller sent bytes at offset {} where {} was expected",
                        chunk.offset, s.written
                    )));
                }
                if s.written + chunk.data.len() as u64 > input.size {
                    return Err(fail(format!(
                        "larger than its size of {} bytes",
                        input.size
                    )));
                }
                let write = tokio::task::spawn_blocking(move || {
                    s.file.write_all(&chunk.data)?;
                    s.hasher.update(&chunk.data);
                    s.written += chunk.data.len() as u64;
                    Ok::<_, std::io::Error>(s)
                });
                let s = tokio::select! {
                    r = write => r
                        .map_err(|e| fail(e.to_string()))?
                        .map_err(|e| fail(format!("cannot write: {e}")))?,
                    () = kill.abort.cancelled() => return Err(Stop::Aborted),
                };
                if s.written > written {
                    backoff.reset();
                }
                sink = Some(s);
            },
        };
        match failure {
            TransferError::Fenced(e) => {
                info!(input = %what, error = %e, "attempt fenced while fetching inputs; stopping it");
                return Err(Stop::Aborted);
            }
            TransferError::Refused(message) => return Err(fail(message)),
            TransferError::Missing(message) => {
                return Err(Stop::Final(format!("input {what}: {message}")))
            }
            e @ (TransferError::Transient(_) | TransferError::Damaged(_)) => failures.failed(&e),
        }
        debug!(input = %what, from = sink.as_ref().map_or(0, |s| s.written), "resuming input fetch");
        if !backoff.sleep(&kill.abort).await {
            return Err(Stop::Aborted);
        }
    }
}

fn verify(sink: Sink, input: &ResultFile) -> Result<(), String> {
    if sink.written != input.size {
        return Err(format!(
            "size mismatch: received {} bytes, expected {}",
            sink.written, input.size
        ));
    }
    let sha = hex(&sink.hasher.finalize());
    if !sha.eq_ignore_ascii_case(input.sha256.trim()) {
        return Err("checksum mismatch".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_stay_inside() {
        let root = Path::new("/w/attempt-1/inputs");
        assert_eq!(
            input_path(root, "extract", "orders.csv").unwrap(),
            root.join("extract/orders.csv")
        );
        assert_eq!(
            input_path(root, "extract", "part/2026/a.csv").unwrap(),
            root.join("extract/part/2026/a.csv")
        );
        for (task, name) in [
            ("extract", "../x"),
            ("extract", "a/../../x"),
            ("extract", "/etc/passwd"),
            ("extract", ""),
            ("extract", "a//b"),
            ("extract", "./a"),
            ("..", "x"),
            ("a/b", "x"),
            ("", "x"),
            ("extract", "a\0b"),
        ] {
            assert!(
                input_path(root, task, name).is_err(),
                "{task:?} {name:?} accepted"
            );
        }
    }

    fn published(fake: &crate::testing::Fake, task: &str, name: &str, data: Vec<u8>) -> ResultFile {
        let file = ResultFile {
            task_id: task.into(),
            attempt: 1,
            name: name.into(),
            size: data.len() as u64,
            sha256: crate::testing::sha256_hex(&data),
            created_at_ms: 0,
        };
        fake.state()
            .inputs
            .insert((task.to_owned(), name.to_owned()), data);
        file
    }

    fn attempt() -> AttemptRef {
        AttemptRef {
            job_id: "j".into(),
            task_id: "load".into(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn stages_inputs_and_resumes_a_broken_stream() {
        let fake = crate::testing::Fake::default();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let inputs = vec![
            published(&fake, "extract", "orders.csv", big.clone()),
            published(&fake, "extract", "part/empty.csv", Vec::new()),
        ];
        fake.state().faults.cut_fetch_at = Some(100_000);
        let client = fake.start().await;
        let dir = tempfile::tempdir().unwrap();
        stage(
            &client,
            &attempt(),
            &KillSwitch::default(),
            dir.path(),
            &inputs,
        )
        .await
        .unwrap();
        let staged = dir.path().join("inputs/extract");
        assert_eq!(std::fs::read(staged.join("orders.csv")).unwrap(), big);
        assert_eq!(std::fs::read(staged.join("part/empty.csv")).unwrap(), b"");
        let offsets = fake.state().fetch_offsets.clone();
        assert_eq!(offsets.len(), 3, "{offsets:?}");
        assert_eq!(offsets[0], 0);
        assert!(
            offsets[1] >= 100_000,
            "resumed from the bytes written: {offsets:?}"
        );
    }

    #[tokio::test]
    async fn bad_or_missing_inputs_fail_naming_the_file() {
        let fake = crate::testing::Fake::default();
        let good = published(&fake, "extract", "orders.csv", b"a,b\n1,2\n".to_vec());
        fake.state().faults.corrupt_inputs = true;
        let client = fake.start().await;
        let dir = tempfile::tempdir().unwrap();
        let kill = KillSwitch::default();
        let r = stage(
            &client,
            &attempt(),
            &kill,
            dir.path(),
            std::slice::from_ref(&good),
        )
        .await;
        assert_eq!(
            r,
            Err(Stop::Failed(
                "input extract/orders.csv: checksum mismatch".into()
            ))
        );

        let dir = tempfile::tempdir().unwrap();
        let mut missing = good.clone();
        missing.name = "gone.csv".into();
        let r = stage(&client, &attempt(), &kill, dir.path(), &[missing]).await;
        assert!(
            matches!(&r, Err(Stop::Final(m)) if m.starts_with("input extract/gone.csv: ")),
            "{r:?}"
        );

        let mut escaping = good;
        escaping.name = "../../etc/cron.d/x".into();
        let r = stage(&client, &attempt(), &kill, dir.path(), &[escaping]).await;
        assert!(
            matches!(&r, Err(Stop::Final(m)) if m.starts_with("input extract/../../etc/cron.d/x: ")),
            "{r:?}"
        );

        // No inputs, no directory.
        let dir = tempfile::tempdir().unwrap();
        stage(&client, &attempt(), &kill, dir.path(), &[])
            .await
            .unwrap();
        assert!(!dir.path().join("inputs").exists());
    }

    #[test]
    fn verify_names_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = |data: &[u8]| {
            let mut hasher = Sha256::new();
            hasher.update(data);
            Sink {
                file: File::create(tmp.path().join("f")).unwrap(),
                hasher,
                written: data.len() as u64,
            }
        };
        let input = ResultFile {
            task_id: "extract".into(),
            attempt: 1,
            name: "orders.csv".into(),
            size: 3,
            sha256: "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD".into(),
            created_at_ms: 0,
        };
        assert_eq!(verify(sink(b"abc"), &input), Ok(()));
        assert_eq!(
            verify(sink(b"abd"), &input),
            Err("checksum mismatch".to_owned())
        );
        assert_eq!(
            verify(sink(b"ab"), &input),
            Err("size mismatch: received 2 bytes, expected 3".to_owned())
        );
    }
}
