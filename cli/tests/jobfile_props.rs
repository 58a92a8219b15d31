//! Property tests of job-file loading: arbitrary bytes, and TOML documents built from the job
//! file's own keys with values of every type, size and character, duplicate keys and cyclic
//! dependencies. Loading answers a spec or problems with their place; it never panics.

#[path = "jobfile_props/controller.rs"]
mod controller;
#[path = "jobfile_props/documents.rs"]
mod documents;
#[path = "jobfile_props/values.rs"]
mod values;

use std::fmt::Write as _;

use ferry_cli::exit::CliError;
use ferry_cli::jobfile::{load, parse};
use proptest::prelude::*;

use controller::controller_problems;
use documents::{document, mangled, plausible_document};

const FILE: &str = "job.toml";

/// `Ok`, or every problem non-empty and placed as `FILE:LINE:COL: …`.
fn check_parsed(source: &str) -> Result<(), TestCaseError> {
    match parse(FILE, source) {
        Ok(spec) => {
            prop_assert!(!spec.tasks.is_empty());
            let refused = controller_problems(&spec);
            prop_assert!(
                refused.is_empty(),
                "accepted, but the controller refuses: {refused:?}"
            );
        }
        Err(err) => {
            prop_assert!(!err.problems.is_empty());
            prop_assert!(!err.to_string().is_empty());
            for problem in &err.problems {
                let rest = problem.strip_prefix("job.toml:");
                prop_assert!(rest.is_some(), "{problem:?}");
                let mut parts = rest.unwrap_or_default().splitn(3, ':');
                let (line, col, message) = (parts.next(), parts.next(), parts.next());
                prop_assert!(line.is_some_and(|l| l.parse::<usize>().is_ok_and(|l| l >= 1)));
                prop_assert!(col.is_some_and(|c| c.parse::<usize>().is_ok_and(|c| c >= 1)));
                prop_assert!(message.is_some_and(|m| !m.trim().is_empty()), "{problem:?}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check_parsed(&source)?;
    }

    #[test]
    fn job_files_of_the_real_keys_never_panic(source in document()) {
        check_parsed(&source)?;
    }

    #[test]
    fn plausible_job_files_are_accepted_only_when_the_controller_would(source in plausible_document()) {
        check_parsed(&source)?;
    }

    #[test]
    fn mangled_job_files_never_panic(source in mangled()) {
        check_parsed(&source)?;
    }

    #[test]
    fn arbitrary_bytes_from_a_file_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        overrides in prop::collection::vec((any::<String>(), any::<String>()), 0..3),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("job.toml");
        std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match load(&path, &overrides) {
            Ok(spec) => prop_assert!(!spec.tasks.is_empty()),
            Err(err) => {
                let err = CliError::from(err);
                prop_assert!(matches!(err, CliError::BadInput(_) | CliError::InvalidJobFile(_)));
                prop_assert!(!err.to_string().trim().is_empty());
            }
        }
    }
}

/// A long chain of dependencies (each task on the one before it), and a cycle through all of
/// them: checked without recursing once per task.
#[test]
fn long_dependency_chains_and_cycles_are_checked() {
    for cyclic in [false, true] {
        let n = 50_000;
        let mut source = String::from("name = \"chain\"\n");
        for i in 0..n {
            let dep = if i > 0 {
                format!("t{}", i - 1)
            } else if cyclic {
                format!("t{}", n - 1)
            } else {
                String::new()
            };
            let _ = write!(source, "[[tasks]]\nid = \"t{i}\"\nshell = \"true\"\n");
            if !dep.is_empty() {
                let _ = writeln!(source, "depends_on = [\"{dep}\"]");
            }
        }
        // The test harness's threads have 2 MiB stacks; the CLI's main thread has more.
        let problems = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse(FILE, &source).map(|_| ()).map_err(|e| e.problems))
            .expect("spawn")
            .join()
            .expect("parse did not panic")
            .unwrap_err();
        assert!(
            problems[0].contains("tasks 50000 are given; the limit is 10000"),
            "{problems:?}"
        );
        assert_eq!(
            problems.iter().any(|p| p.contains("dependency cycle")),
            cyclic,
            "{:?}",
            &problems[..problems.len().min(3)]
        );
    }
}

/// Arrays and inline tables nested deeper than anyone writes.
#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [100, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let value = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for source in [
                format!("name = {value}\n[[tasks]]\nid = \"a\"\nshell = \"x\"\n"),
                format!("name = \"j\"\n[[tasks]]\nid = \"a\"\nshell = \"x\"\nlabels = {value}\n"),
            ] {
                let outcome = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn(move || parse(FILE, &source).map(|_| ()).map_err(|e| e.problems))
                    .expect("spawn")
                    .join()
                    .expect("parse did not panic");
                let problems = outcome.unwrap_err();
                assert!(!problems.is_empty());
            }
        }
    }
}

/// What the properties found accepted by the CLI and refused by the controller: each field
/// is checked against the limits the controller applies, with its place.
#[test]
fn every_limit_the_controller_applies_is_checked_in_the_file() {
    let source = format!(
        "name = \"j\"\n[params]\nbig = \"{}\"\nnul = \"a\\u0000b\"\n[[tasks]]\nid = \"a\"\n\
         shell = \"x\"\nqueue = \"q\\u001b\"\nlabels = {{ site = \"a\\nb\" }}\n\
         outputs = [\"a\\nb\"]\n[[tasks]]\nid = \"b\"\n\
         sql = {{ datasource = \"{}\", query = \"select\\u0000\", incremental = {{ column = \"c\\t\" }} }}\n",
        "v".repeat((32 << 10) + 1),
        "d".repeat(129),
    );
    let problems = parse(FILE, &source).unwrap_err().problems;
    assert_eq!(
        problems,
        vec![
            "job.toml:3:7: params.big is 32769 bytes long; the limit is 32768",
            "job.toml:4:7: params.nul holds a NUL byte ('\\0')",
            "job.toml:8:9: queue holds a control character ('\\u{1b}')",
            "job.toml:9:19: labels.\"site\" holds a control character ('\\n')",
            "job.toml:10:12: output \"a\\nb\" holds a control character ('\\n')",
            "job.toml:13:22: sql.datasource is 129 bytes long; the limit is 128",
            "job.toml:13:163: sql.query holds a NUL byte ('\\0')",
            "job.toml:13:204: sql.incremental.column holds a control character ('\\t')",
        ]
    );
}
