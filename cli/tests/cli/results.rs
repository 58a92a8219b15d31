//! `ferry results list` and `results get`: the table and JSON, verified downloads resumed
//! after a broken stream, corrupt downloads and escaping names refused, bad input (exit 2).

use sha2::{Digest, Sha256};

use crate::fake_controller::{hex, published, start, Script};
use crate::support::ferry;

fn results_script() -> Script {
    let big: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
    Script {
        results: vec![
            published("out.csv", big),
            published("empty.txt", Vec::new()),
            published("parts/a.csv", b"a,1\n".to_vec()),
        ],
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn results_list_prints_a_table_or_json() {
    let (url, _) = start(results_script()).await;
    let run = ferry(&url, &["results", "list", "job-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[0].starts_with("TASK     ATTEMPT  NAME"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("out.csv") && l.contains("10.3 KiB")),
        "{}",
        run.stdout
    );

    let run = ferry(
        &url,
        &["results", "list", "job-1", "extract", "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let files = json.as_array().unwrap();
    assert_eq!(files.len(), 3);
    let empty = files.iter().find(|f| f["name"] == "empty.txt").unwrap();
    assert_eq!(
        empty,
        &serde_json::json!({
            "task": "extract", "attempt": 2, "name": "empty.txt", "size": 0,
            "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "created_at": "2026-11-18T11:06:40.000Z"
        })
    );

    let run = ferry(&url, &["results", "list", "nope"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_saves_verified_files_and_resumes_a_broken_stream() {
    let (url, fake) = start(Script {
        break_downloads_at: Some(4000),
        ..results_script()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/folder");
    let out_arg = out.display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &out_arg],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (results, downloads) = {
        let script = fake.0.lock().unwrap();
        (script.results.clone(), script.downloads.clone())
    };
    for (name, data, _) in &results {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), data, "{name}");
    }
    let mut left: Vec<String> = walk(&out);
    left.sort();
    assert_eq!(
        left,
        ["empty.txt", "out.csv", "parts/a.csv"],
        "nothing else"
    );
    assert_eq!(
        sorted_paths(&run.stdout),
        sorted_paths(&format!(
            "{0}/out.csv\n{0}/empty.txt\n{0}/parts/a.csv\n",
            out.display()
        )),
        "one saved path a line"
    );
    // out.csv: asked from 0, broke at 4000, asked again from 4000.
    let offsets: Vec<u64> = downloads
        .iter()
        .filter(|d| d.name == "out.csv")
        .map(|d| d.offset)
        .collect();
    assert_eq!(offsets, [0, 4000]);
    assert!(
        run.stderr
            .contains("download of out.csv broke at byte 4000 of 10500"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("resuming from byte 4000"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("saved out.csv (10.3 KiB)"),
        "{}",
        run.stderr
    );

    // Only the named one, as JSON.
    let only = dir.path().join("only");
    let only_arg = only.display().to_string();
    let run = ferry(
        &url,
        &[
            "--output",
            "json",
            "results",
            "get",
            "job-1",
            "extract",
            "-o",
            &only_arg,
            "--name",
            "parts/a.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json[0]["name"], "parts/a.csv");
    assert_eq!(
        json[0]["path"],
        only.join("parts/a.csv").display().to_string()
    );
    assert_eq!(walk(&only), ["parts/a.csv"]);
}

/// The stdout lines sorted, for comparing without depending on order.
fn sorted_paths(stdout: &str) -> String {
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Files under `dir`, relative, '/'-separated.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_refuses_a_corrupt_download_and_leaves_nothing() {
    let mut script = results_script();
    // The listed checksum is that of other bytes.
    script.results[0].2 = hex(&Sha256::digest(b"something else"));
    let expected = script.results[0].2.clone();
    let actual = hex(&Sha256::digest(&script.results[0].1));
    let (url, _) = start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let run = ferry(
        &url,
        &[
            "results", "get", "job-1", "extract", "-o", &out, "--name", "out.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("error: checksum mismatch for out.csv: expected {expected}, got {actual}\n")
    );
    assert!(
        walk(dir.path()).is_empty(),
        "left behind: {:?}",
        walk(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_refuses_names_escaping_the_folder() {
    let mut script = results_script();
    script
        .results
        .push(published("../escape.txt", b"x".to_vec()));
    let (url, fake) = start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &out_arg],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("\"../escape.txt\""), "{}", run.stderr);
    assert!(walk(dir.path()).is_empty(), "{:?}", walk(dir.path()));
    assert!(!dir.path().join("escape.txt").exists());
    assert!(
        fake.0.lock().unwrap().downloads.is_empty(),
        "nothing was fetched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_bad_input_exits_2() {
    let (url, _) = start(results_script()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("sub").display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &under_file],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: cannot create folder"),
        "{}",
        run.stderr
    );

    let out = dir.path().join("out").display().to_string();
    let run = ferry(
        &url,
        &[
            "results", "get", "job-1", "extract", "-o", &out, "--name", "nope.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no published output named \"nope.csv\""),
        "{}",
        run.stderr
    );

    let run = ferry(&url, &["results", "get", "job-1", "extract", "--bogus"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    let run = ferry(&url, &["results", "get", "nope", "extract", "-o", &out]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
}
