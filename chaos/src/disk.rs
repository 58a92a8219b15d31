//! A small filesystem of the run's own for the controllers' data directory (a tmpfs, as in
//! `tests/tests/disk_full.rs`; needs root), and the filler that takes its free space down to
//! below the controllers' disk reserve and gives it back.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Size of the filesystem: room for the published outputs of `tasks` tasks (about one in ten
/// uploads at most 16 KiB), and at least 128 MiB.
pub fn size_mib(tasks: usize) -> u64 {
    (64 + tasks as u64 * 3 / 2 / 1024).max(128)
}
/// `--disk-reserve` given to the controllers.
pub const RESERVE: u64 = 16 << 20;

pub struct SmallDisk {
    mount: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mib` MiB at `mount` (created).
    pub fn mount(mount: &Path, size_mib: u64) -> Result<Self> {
        std::fs::create_dir_all(mount)?;
        let at = mount.to_str().context("a mount point that is not UTF-8")?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m"),
                "tmpfs",
                at,
            ],
        )?;
        Ok(Self {
            mount: mount.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("chaos-filler")
    }

    /// Writes a file until the disk is full, then gives back half the reserve: uploads are
    /// refused (they need the reserve free), small writes still fit.
    pub fn fill(&self) -> Result<()> {
        let path = self.filler();
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut written: u64 = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e).context("filling the data disk"),
            }
        }
        file.set_len(written.saturating_sub(RESERVE / 2))?;
        Ok(())
    }

    pub fn free(&self) -> Result<()> {
        match std::fs::remove_file(self.filler()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = run("umount", &["-l", &self.mount.display().to_string()]) {
            eprintln!("[chaos] unmounting the data disk: {e:#}");
        }
    }
}
