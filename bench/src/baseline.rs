//! The host's own ceiling for one-process-per-task work, measured in the same run as the
//! figures it bounds (as `upload` measures raw loopback TCP beside its MB/s): how fast this
//! machine starts and reaps `/bin/sh -c true`, the very process each benchmark task is. On a
//! virtual machine this drifts by a quarter from day to day, and with it every task figure.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{
    common::{cpu_times, ms, secs},
    report::Stats,
};

/// What `n` spawns of `/bin/sh -c true` on each of `threads` threads cost.
#[derive(Debug)]
pub struct ShellSpawns {
    /// Spawned and reaped per second, all threads together.
    pub per_s: f64,
    /// CPU time of one shell (its own, from the kernel's accounting of reaped children).
    pub cpu_ms: f64,
    /// Wall time of one spawn-and-wait, over every thread's samples.
    pub wall: Stats,
}

/// Runs `n` spawn-and-wait rounds of `/bin/sh -c true` on each of `threads` threads at once,
/// with this process's environment (as an agent passes its own to a task) less the library
/// path `cargo run` adds, which the benchmarked agent does not have either.
pub fn shell_spawns(threads: usize, n: usize) -> Result<ShellSpawns> {
    let before = cpu_times("self")?.children_s;
    let started = Instant::now();
    let walls = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(move || spawn_and_wait(n)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| bail!("a spawning thread panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let elapsed = secs(started.elapsed());
    let cpu_s = cpu_times("self")?.children_s - before;
    let mut walls: Vec<f64> = walls.into_iter().flatten().collect();
    let count = walls.len();
    let wall = Stats::of(&mut walls).context("no shell was spawned")?;
    Ok(ShellSpawns {
        per_s: count as f64 / elapsed,
        cpu_ms: cpu_s * 1000.0 / count as f64,
        wall,
    })
}

/// `n` sequential spawn-and-wait rounds; the wall time of each, in ms.
fn spawn_and_wait(n: usize) -> Result<Vec<f64>> {
    let mut walls = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if std::env::var_os("CARGO").is_some() {
            cmd.env_remove("LD_LIBRARY_PATH");
        }
        let started = Instant::now();
        let status = cmd
            .status()
            .context("running /bin/sh -c true for the baseline")?;
        walls.push(ms(started.elapsed()));
        if !status.success() {
            bail!("/bin/sh -c true ended with {status}");
        }
    }
    Ok(walls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_are_counted_and_timed() {
        let spawns = shell_spawns(2, 5).unwrap();
        assert_eq!(spawns.wall.n, 10);
        assert!(spawns.per_s > 0.0 && spawns.wall.p50 > 0.0, "{spawns:?}");
        assert!(spawns.cpu_ms >= 0.0, "{spawns:?}");
    }
}
