//! A run's setup, made before any thread exists: its seed and id, its directory (whose `tmp/`
//! becomes `TMPDIR`), the ledger tasks append to, and the datasource's password in the
//! environment every process inherits.

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use anyhow::{Context, Result};

use crate::{fleet::PASSWORD_ENV, Args};

pub struct Setup {
    pub seed: u64,
    /// The run's id: in every task's environment (`FERRY_PARAM_CHAOS_RUN`) and its paths.
    pub run: String,
    pub root: PathBuf,
    pub secret: String,
}

impl Setup {
    /// Makes the run's directory (its `tmp/` becomes `TMPDIR`, so that every process's dir of
    /// the harness is inside it) and puts the datasource's password in the environment, before
    /// any thread exists.
    pub fn new(args: &Args) -> Result<Self> {
        let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
        let run = format!("{seed}-{}", std::process::id());
        let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let root = parent.join(format!("ferry-chaos-{run}"));
        std::fs::create_dir_all(root.join("tmp"))
            .with_context(|| format!("creating {}", root.display()))?;
        // Tasks may run as another user than the agent's: they must be able to append.
        let ledger_dir = root.join("ledger");
        std::fs::create_dir_all(&ledger_dir)?;
        for dir in [&root, &ledger_dir] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
        }
        std::fs::write(ledger_dir.join("ledger"), "")?;
        std::fs::set_permissions(
            ledger_dir.join("ledger"),
            std::fs::Permissions::from_mode(0o666),
        )?;
        let secret = format!(
            "chaos-pw-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        std::fs::write(root.join("secret.txt"), &secret)?;
        std::fs::set_permissions(
            root.join("secret.txt"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        // SAFETY-free in edition 2021; no other thread exists yet.
        std::env::set_var("TMPDIR", root.join("tmp"));
        std::env::set_var(PASSWORD_ENV, &secret);
        Ok(Self {
            seed,
            run,
            root,
            secret,
        })
    }

    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger").join("ledger")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.root.join("secret.txt")
    }
}
