//! `extract`: SQL extraction of a 5,000,000-row table of 8 mixed columns (bigint, timestamptz,
//! text, numeric, int, bool, double, text), each figure beside its reference in the same run:
//! - PostgreSQL → CSV: Ferry vs `psql -c "\copy (select …) to 'file' csv"`;
//! - PostgreSQL → Parquet: Ferry vs ConnectorX reading into Arrow plus pyarrow writing Parquet
//!   (a short Python script; missing, with the reason, when they cannot be installed);
//! - MariaDB → CSV: Ferry vs `mariadb --batch` to a file;
//! - the agent's peak RSS (`VmHWM`) over the Parquet extract (a fresh agent runs it first).
//!
//! Ferry's time is the extract's own (connect, query, write and fsync the files), from the
//! agent's `extract written` log line; the uploads of the files that follow are not counted,
//! as the references write a local file and stop there. The tables are created when absent.
//! Each pair runs `--runs` times, alternating, and each side keeps its best run.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{
    task_spec::Kind, GetJobRequest, JobSpec, JobState, RetryPolicy, SqlTask, TaskSpec,
};
use ferry_tests::{
    databases::{self, write_agent_config, DatasourceConfig},
    Agent, AgentOpts, Controller, TestDir,
};

use crate::{
    common::{self, job_ended_badly, job_state, Deadline},
    report::{emit, Target},
};

const BENCH: &str = "extract";
const TABLE: &str = "ferry_bench_extract";
const COLUMNS: &str = "id, ts, code, amount, qty, flag, score, note";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Rows of the PostgreSQL table.
    #[arg(long, default_value_t = 5_000_000)]
    pub rows: u64,
    /// Rows of the MariaDB table.
    #[arg(long, default_value_t = 5_000_000)]
    pub mariadb_rows: u64,
    /// Upper bound for each extract, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Runs of each extract and its reference, alternating; each side keeps its best run
    /// (the machine is shared: the best run is the least disturbed one).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn psql(url: &str, sql: &str) -> Result<String> {
    run_cmd(
        Command::new("psql")
            .arg(url)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(sql),
        "psql",
    )
}

/// `mariadb` client arguments for a `mysql://user[:password]@host[:port]/db` URL.
fn mariadb_args(url: &str) -> Result<Vec<String>> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("mysql url without ://")?;
    let (auth, hostdb) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = hostdb.split_once('/').unwrap_or((hostdb, "test"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let mut args = vec![
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--user={user}"),
    ];
    if !password.is_empty() {
        args.push(format!("--password={password}"));
    }
    args.push(db.split('?').next().unwrap_or("test").to_owned());
    Ok(args)
}

fn mariadb(url: &str, sql: &str) -> Result<String> {
    run_cmd(
        Command::new("mariadb")
            .args(mariadb_args(url)?)
            .args(["--batch", "--skip-column-names", "-e"])
            .arg(sql),
        "mariadb",
    )
}

fn ensure_postgres_table(url: &str, rows: u64) -> Result<()> {
    let have = psql(url, &format!("SELECT count(*) FROM {TABLE}"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if have == Some(rows) {
        eprintln!("[extract] PostgreSQL table {TABLE} has its {rows} rows");
        return Ok(());
    }
    eprintln!("[extract] creating PostgreSQL table {TABLE} with {rows} rows");
    psql(
        url,
        &format!(
            "DROP TABLE IF EXISTS {TABLE}; \
             CREATE TABLE {TABLE} (id bigint, ts timestamptz, code text, amount numeric(12,2), \
               qty int, flag bool, score double precision, note text); \
             INSERT INTO {TABLE} SELECT g, timestamptz '2026-01-01' + g * interval '1 second', \
               md5(g::text), (g % 1000000) / 100.0, (g % 1000)::int, g % 3 = 0, g * 0.001, \
               'note ' || (g % 5000) FROM generate_series(1, {rows}) g"
        ),
    )?;
    // VACUUM cannot share the multi-statement string's implicit transaction.
    psql(url, &format!("VACUUM ANALYZE {TABLE}"))?;
    Ok(())
}

fn ensure_mariadb_table(url: &str, rows: u64) -> Result<()> {
    let have = mariadb(url, &format!("SELECT count(*) FROM {TABLE}"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if have == Some(rows) {
        eprintln!("[extract] MariaDB table {TABLE} has its {rows} rows");
        return Ok(());
    }
    eprintln!("[extract] creating MariaDB table {TABLE} with {rows} rows");
    let started = Instant::now();
    mariadb(
        url,
        &format!(
            "DROP TABLE IF EXISTS {TABLE}; \
             CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, ts TIMESTAMP(6) NULL, code TEXT, \
               amount DECIMAL(12,2), qty INT, flag BOOL, score DOUBLE, note TEXT); \
             INSERT INTO {TABLE} SELECT seq, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, \
               md5(seq), (seq % 1000000) / 100.0, seq % 1000, seq % 3 = 0, seq * 0.001, \
               concat('note ', seq % 5000) FROM seq_1_to_{rows};"
        ),
    )?;
    eprintln!(
        "[extract] MariaDB table created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The agent's last `extract written` line: (rows, seconds).
fn extract_line(log: &Path) -> Result<(u64, f64)> {
    let text = std::fs::read_to_string(log).context("reading the agent log")?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("extract written"))
        .context("no `extract written` line in the agent log")?;
    let field = |key: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(|v| v.trim_matches('"').to_owned())
    };
    let rows = field("rows=").and_then(|v| v.parse().ok());
    let secs = field("seconds=").and_then(|v| v.parse().ok());
    match (rows, secs) {
        (Some(r), Some(s)) => Ok((r, s)),
        _ => bail!("cannot read rows and seconds from {line:?}"),
    }
}

/// Runs one extract job through the agent; returns rows/s from the agent's own timing.
async fn ferry_extract(
    controller: &Controller,
    agent: &Agent,
    datasource: &str,
    format: &str,
    timeout: Duration,
) -> Result<f64> {
    let spec = JobSpec {
        name: format!("bench-extract-{datasource}-{format}"),
        params: Default::default(),
        tasks: vec![TaskSpec {
            id: "extract".into(),
            queue: common::QUEUE.into(),
            kind: Some(Kind::Sql(SqlTask {
                datasource: datasource.into(),
                query: format!("SELECT {COLUMNS} FROM {TABLE}"),
                format: format.into(),
                ..Default::default()
            })),
            retry: Some(RetryPolicy {
                max_attempts: 1,
                initial_delay_ms: None,
                max_delay_ms: None,
            }),
            ..Default::default()
        }],
    };
    let mut client = controller.job_client().await?;
    let id = common::submit(&mut client, spec).await?;
    let deadline = Deadline::after(timeout);
    loop {
        let job = client
            .get_job(GetJobRequest { job_id: id.clone() })
            .await
            .context("GetJob")?
            .into_inner();
        let state = job_state(job.state);
        if state == JobState::Succeeded {
            break;
        }
        if job_ended_badly(state) {
            bail!(
                "the {datasource} {format} extract ended {state:?}: {job:?}; agent log:\n{}",
                agent.log_tail(20)
            );
        }
        deadline.check(|| format!("the {datasource} {format} extract"))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rows, secs) = extract_line(agent.log_path())?;
    let per_s = rows as f64 / secs.max(1e-9);
    eprintln!(
        "[extract] ferry {datasource} {format}: {rows} rows in {secs:.2} s = {per_s:.0} rows/s"
    );
    Ok(per_s)
}

fn timed(what: &str, rows: u64, f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    let secs = started.elapsed().as_secs_f64();
    let per_s = rows as f64 / secs;
    eprintln!("[extract] {what}: {rows} rows in {secs:.2} s = {per_s:.0} rows/s");
    Ok(per_s)
}

const CONNECTORX: &str = r#"
import sys, time
import connectorx as cx
import pyarrow.parquet as pq
url, query, out = sys.argv[1], sys.argv[2], sys.argv[3]
table = cx.read_sql(url, query, return_type="arrow")
pq.write_table(table, out, compression="zstd")
print(table.num_rows)
"#;

/// ConnectorX + pyarrow rows/s, or why it could not run.
fn connectorx(url: &str, rows: u64, out: &Path) -> Result<Result<f64, String>> {
    let has = |py: &str| {
        Command::new("python3")
            .args(["-c", py])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("import connectorx, pyarrow") {
        eprintln!("[extract] installing connectorx and pyarrow with pip");
        let pip = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "connectorx",
                "pyarrow",
            ])
            .output();
        match pip {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Ok(Err(format!(
                    "pip install connectorx pyarrow failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Err(e) => return Ok(Err(format!("cannot run python3 -m pip: {e}"))),
        }
    }
    let query = format!("SELECT {COLUMNS} FROM {TABLE}");
    let per_s = timed("connectorx + pyarrow parquet", rows, || {
        let printed = run_cmd(
            Command::new("python3")
                .args(["-c", CONNECTORX, url, &query])
                .arg(out),
            "connectorx",
        )?;
        if printed.trim() != rows.to_string() {
            bail!("connectorx read {} rows, not {rows}", printed.trim());
        }
        Ok(())
    })?;
    Ok(Ok(per_s))
}

pub async fn run(args: &Args) -> Result<()> {
    let pg = databases::postgres_url();
    let my = databases::mysql_url();
    ensure_postgres_table(&pg, args.rows)?;
    let timeout = Duration::from_secs(args.timeout);
    let scratch = TestDir::new("bench-extract")?;
    let config = scratch.path().join("agent.toml");
    write_agent_config(
        &config,
        &[
            DatasourceConfig::new("pg", &pg),
            DatasourceConfig::new("my", &my),
        ],
    )?;
    let controller = common::controller(Duration::from_secs(15)).await?;
    let agent = Agent::start(
        &controller.addr(),
        common::trusting(
            AgentOpts::new("bench-extract")
                .queue(common::QUEUE)
                .max_tasks(1)
                .heartbeat_interval(Duration::from_secs(5))
                .arg("--config")
                .arg(config.display().to_string()),
        ),
    )
    .await
    .context("starting ferry-agent")?;
    let pid = agent.pid().context("the agent has no pid")?;

    let runs = args.runs.max(1);
    let n = runs as usize;
    // Parquet first, on the fresh agent: its VmHWM is then the Parquet extracts' peak.
    let cx_out = scratch.path().join("connectorx.parquet");
    let mut ferry_parquet = 0.0f64;
    let mut cx: Result<f64, String> = Err(String::new());
    for _ in 0..runs {
        let f = ferry_extract(&controller, &agent, "pg", "parquet", timeout).await?;
        ferry_parquet = ferry_parquet.max(f);
        cx = match (connectorx(&pg, args.rows, &cx_out)?, cx) {
            (Ok(now), Ok(best)) => Ok(now.max(best)),
            (now, _) => now,
        };
        let _ = std::fs::remove_file(&cx_out);
    }
    let (_, hwm) = common::memory_mb(pid).context("the agent exited")?;

    let psql_out = scratch.path().join("psql.csv");
    let copy = format!(
        "\\copy (SELECT {COLUMNS} FROM {TABLE}) to '{}' csv",
        psql_out.display()
    );
    let (mut ferry_csv, mut psql_csv) = (0.0f64, 0.0f64);
    for _ in 0..runs {
        let f = ferry_extract(&controller, &agent, "pg", "csv", timeout).await?;
        ferry_csv = ferry_csv.max(f);
        let p = timed("psql \\copy csv", args.rows, || psql(&pg, &copy).map(drop))?;
        psql_csv = psql_csv.max(p);
        let _ = std::fs::remove_file(&psql_out);
    }

    emit(BENCH, "pg_csv_rows_per_s", ferry_csv, "rows/s", n, None);
    emit(
        BENCH,
        "psql_copy_csv_rows_per_s",
        psql_csv,
        "rows/s",
        n,
        None,
    );
    let target = Some(Target::AtLeast(0.9));
    emit(
        BENCH,
        "pg_csv_vs_psql",
        ferry_csv / psql_csv,
        "x",
        n,
        target,
    );
    emit(
        BENCH,
        "pg_parquet_rows_per_s",
        ferry_parquet,
        "rows/s",
        n,
        None,
    );
    match cx {
        Ok(cx) => {
            emit(
                BENCH,
                "connectorx_parquet_rows_per_s",
                cx,
                "rows/s",
                n,
                None,
            );
            let target = Some(Target::AtLeast(1.5));
            let ratio = ferry_parquet / cx;
            emit(BENCH, "pg_parquet_vs_connectorx", ratio, "x", n, target);
        }
        Err(reason) => {
            eprintln!("[extract] connectorx figure missing: {reason}");
            println!(
                "{{\"bench\":\"{BENCH}\",\"figure\":\"pg_parquet_vs_connectorx\",\"value\":null,\"missing\":{}}}",
                serde_json::Value::from(reason)
            );
        }
    }
    let target = Some(Target::Below(256.0));
    emit(BENCH, "agent_peak_rss_parquet_mb", hwm, "MiB", 1, target);

    ensure_mariadb_table(&my, args.mariadb_rows)?;
    let my_out = scratch.path().join("mariadb.tsv");
    let my_args = mariadb_args(&my)?;
    let (mut ferry_my, mut cli_my) = (0.0f64, 0.0f64);
    for _ in 0..runs {
        let f = ferry_extract(&controller, &agent, "my", "csv", timeout).await?;
        ferry_my = ferry_my.max(f);
        let c = timed("mariadb --batch", args.mariadb_rows, || {
            let file = std::fs::File::create(&my_out)?;
            let status = Command::new("mariadb")
                .args(&my_args)
                .args(["--batch", "-e"])
                .arg(format!("SELECT {COLUMNS} FROM {TABLE}"))
                .stdout(file)
                .status()
                .context("running mariadb")?;
            if !status.success() {
                bail!("mariadb --batch failed: {status}");
            }
            Ok(())
        })?;
        cli_my = cli_my.max(c);
        let _ = std::fs::remove_file(&my_out);
    }
    emit(BENCH, "mariadb_csv_rows_per_s", ferry_my, "rows/s", n, None);
    emit(BENCH, "mariadb_batch_rows_per_s", cli_my, "rows/s", n, None);
    let target = Some(Target::AtLeast(1.0));
    emit(
        BENCH,
        "mariadb_csv_vs_cli",
        ferry_my / cli_my,
        "x",
        n,
        target,
    );
    Ok(())
}
