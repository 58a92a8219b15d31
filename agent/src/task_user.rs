//! Whom shell tasks run as, decided when the agent starts (issue 16, class 4), and the checks
//! that keep the agent's secrets from them:
//!
//! - with `run_as`, tasks run as that user (the agent must then run as root, or already be that
//!   user); its guardian switches in the child before exec and keeps the power to kill;
//! - an agent running as root **without** `run_as` refuses to start, saying what to set: tasks
//!   run as root only when the config says so (`allow_root_tasks = true`). Not a silent
//!   fallback to `nobody`: a task that suddenly cannot read its data is a worse surprise than
//!   an agent that will not start and says why;
//! - the agent's secret files (its config, token, datasources' password files, TLS key) must
//!   be unreadable by the tasks' user: the agent refuses to start otherwise, naming the file
//!   (owner, group and other bits, and whether the user can reach it at all, are checked; ACLs
//!   are not). Without `run_as`, tasks are the agent's own user and can read what it reads: a
//!   world-readable secret file is then only warned about;
//! - the work directory must be reachable by the tasks' user (each directory on its path
//!   searchable), and not writable by it: the agent keeps its state there (its lock, the
//!   guardians' records), and makes each attempt's directory in it.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

use crate::config::{Config, RunAs};

#[derive(Debug, thiserror::Error)]
pub enum TaskUserError {
    #[error(
        "ferry-agent runs as root and would run its tasks as root: set run_as = \"USER[:GROUP]\" \
         in its config (or --run-as, FERRY_RUN_AS), e.g. run_as = \"nobody\", to run them as that \
         user, or allow_root_tasks = true (--allow-root-tasks) to run them as root"
    )]
    RootTasks,
    #[error(
        "run_as = {spec:?} names root: set allow_root_tasks = true as well to run tasks as root"
    )]
    RunAsRoot { spec: String },
    #[error(
        "run_as = {spec:?} needs the agent to run as root (it runs as uid {euid}, gid {egid}); \
         start it as root, or leave run_as out to run tasks as the agent's own user"
    )]
    NeedsRoot { spec: String, euid: u32, egid: u32 },
    #[error(
        "tasks run as {spec} could read {setting} {path} ({why}); make it readable by the agent \
         alone, e.g. chmod 600 {path}"
    )]
    SecretReadable {
        spec: String,
        setting: String,
        path: PathBuf,
        why: String,
    },
    #[error(
        "tasks run as {spec} cannot reach the work directory: {dir} is not searchable by them \
         (owner uid {owner}, mode {mode:o}); e.g. chmod o+x {dir}, or choose another work_dir"
    )]
    WorkDirUnreachable {
        spec: String,
        dir: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error(
        "tasks run as {spec} could write into the work directory {dir} (owner uid {owner}, mode \
         {mode:o}), where the agent keeps its state: it must be the agent's alone, e.g. chown \
         root {dir} && chmod 755 {dir}"
    )]
    WorkDirWritable {
        spec: String,
        dir: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("cannot check {setting} {path}: {source}")]
    Stat {
        setting: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whom tasks run as: `None` for the agent's own user (no switch).
pub fn decide(config: &Config, euid: u32, egid: u32) -> Result<Option<RunAs>, TaskUserError> {
    match &config.run_as {
        None if euid == 0 && !config.allow_root_tasks => Err(TaskUserError::RootTasks),
        None => Ok(None),
        Some(run_as) if run_as.is_root() && !config.allow_root_tasks => {
            Err(TaskUserError::RunAsRoot {
                spec: run_as.spec.clone(),
            })
        }
        Some(run_as) if euid == 0 => Ok(Some(run_as.clone())),
        // Already that user and group: nothing to switch.
        Some(run_as) if run_as.uid == euid && run_as.gid == egid => Ok(None),
        Some(run_as) => Err(TaskUserError::NeedsRoot {
            spec: run_as.spec.clone(),
            euid,
            egid,
        }),
    }
}

/// The permission bits (`r` 4, `w` 2, `x` 1) that apply to `uid` with `groups` for a file
/// with this owner, group and mode, as the kernel picks them (owner, else group, else other).
fn bits_for(owner: u32, group: u32, mode: u32, uid: u32, groups: &[u32]) -> u32 {
    if uid == 0 {
        return 0o7;
    }
    if owner == uid {
        (mode >> 6) & 0o7
    } else if groups.contains(&group) {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    }
}

/// The first directory on `path`'s way (its ancestors, `path` itself when `whole`) that the
/// user cannot search, with its owner and mode.
fn unsearchable(
    path: &Path,
    whole: bool,
    uid: u32,
    groups: &[u32],
) -> io::Result<Option<(PathBuf, u32, u32)>> {
    let path = std::fs::canonicalize(path)?;
    let mut dirs: Vec<&Path> = path.ancestors().skip(usize::from(!whole)).collect();
    dirs.reverse();
    for dir in dirs {
        let meta = std::fs::metadata(dir)?;
        if bits_for(meta.uid(), meta.gid(), meta.mode(), uid, groups) & 0o1 == 0 {
            return Ok(Some((dir.to_owned(), meta.uid(), meta.mode() & 0o7777)));
        }
    }
    Ok(None)
}

/// Why the user could read `path`; `None` when it cannot.
fn readable_by(path: &Path, uid: u32, groups: &[u32]) -> io::Result<Option<String>> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.mode() & 0o7777;
    if bits_for(meta.uid(), meta.gid(), mode, uid, groups) & 0o4 == 0 {
        return Ok(None);
    }
    if unsearchable(path, false, uid, groups)?.is_some() {
        return Ok(None);
    }
    let why = if meta.uid() == uid {
        format!("owned by that user, mode {mode:o}")
    } else if groups.contains(&meta.gid()) {
        format!("group-readable by its group {}, mode {mode:o}", meta.gid())
    } else {
        format!("readable by every user, mode {mode:o}")
    };
    Ok(Some(why))
}

/// Refuses to start when tasks run as `run_as` could read one of the agent's secret files or
/// not reach `work_dir`; without `run_as`, warns about world-readable secret files.
pub fn check_files(
    config: &Config,
    run_as: Option<&RunAs>,
    work_dir: &Path,
) -> Result<(), TaskUserError> {
    let stat = |setting: &str, path: &Path| {
        let setting = setting.to_owned();
        let path = path.to_owned();
        move |source| TaskUserError::Stat {
            setting,
            path,
            source,
        }
    };
    for (setting, path) in &config.secret_files {
        match run_as {
            Some(user) if !user.is_root() => {
                if let Some(why) =
                    readable_by(path, user.uid, &user.groups).map_err(stat(setting, path))?
                {
                    return Err(TaskUserError::SecretReadable {
                        spec: user.spec.clone(),
                        setting: setting.clone(),
                        path: path.clone(),
                        why,
                    });
                }
            }
            Some(_) => {}
            None => {
                let meta = std::fs::metadata(path).map_err(stat(setting, path))?;
                if meta.mode() & 0o004 != 0 {
                    warn!(
                        setting = %setting,
                        path = %path.display(),
                        mode = format!("{:o}", meta.mode() & 0o7777),
                        "a file of the agent's secrets is readable by every user of this host"
                    );
                }
            }
        }
    }
    match run_as {
        Some(user) if !user.is_root() => {
            let reach = unsearchable(work_dir, true, user.uid, &user.groups)
                .map_err(stat("work_dir", work_dir))?;
            if let Some((dir, owner, mode)) = reach {
                return Err(TaskUserError::WorkDirUnreachable {
                    spec: user.spec.clone(),
                    dir,
                    owner,
                    mode,
                });
            }
            let meta = std::fs::metadata(work_dir).map_err(stat("work_dir", work_dir))?;
            if bits_for(meta.uid(), meta.gid(), meta.mode(), user.uid, &user.groups) & 0o2 != 0 {
                return Err(TaskUserError::WorkDirWritable {
                    spec: user.spec.clone(),
                    dir: work_dir.to_owned(),
                    owner: meta.uid(),
                    mode: meta.mode() & 0o7777,
                });
            }
            info!(
                run_as = %user.spec, uid = user.uid, gid = user.gid,
                "shell tasks run as this user"
            );
        }
        Some(user) => info!(run_as = %user.spec, "shell tasks run as root (allow_root_tasks)"),
        None => info!(
            "shell tasks run as the agent's own user and can read what it can; run the agent as root with run_as to keep its secrets from them"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(run_as: Option<&str>, allow_root_tasks: bool) -> Config {
        let mut c = Config::load_from(Default::default(), Vec::new()).unwrap();
        c.run_as = run_as.map(|s| RunAs::parse(s).unwrap());
        c.allow_root_tasks = allow_root_tasks;
        c
    }

    #[test]
    fn a_root_agent_runs_tasks_as_root_only_when_told() {
        let e = decide(&config(None, false), 0, 0).unwrap_err().to_string();
        assert!(
            e.contains("run_as = \"USER[:GROUP]\"") && e.contains("allow_root_tasks = true"),
            "{e}"
        );
        assert_eq!(decide(&config(None, true), 0, 0).unwrap(), None);
        let e = decide(&config(Some("root"), false), 0, 0).unwrap_err();
        assert!(matches!(e, TaskUserError::RunAsRoot { .. }), "{e}");
        assert!(decide(&config(Some("root"), true), 0, 0).unwrap().is_some());
        let switched = decide(&config(Some("54321:54321"), false), 0, 0).unwrap();
        assert_eq!(switched.map(|u| u.uid), Some(54321));
        // Not root: tasks are the agent's user, or the agent cannot switch.
        assert_eq!(decide(&config(None, false), 1000, 1000).unwrap(), None);
        assert_eq!(
            decide(&config(Some("54321:54321"), false), 54321, 54321).unwrap(),
            None
        );
        let e = decide(&config(Some("54321:54321"), false), 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the agent to run as root"), "{e}");
    }

    #[test]
    fn permission_bits_as_the_kernel_picks_them() {
        // Owner bits for the owner even when others may read more.
        assert_eq!(bits_for(5, 5, 0o047, 5, &[5]), 0);
        assert_eq!(bits_for(5, 6, 0o640, 7, &[6]), 0o4);
        assert_eq!(bits_for(5, 6, 0o640, 7, &[8]), 0);
        assert_eq!(bits_for(5, 6, 0o604, 7, &[8]), 0o4);
        assert_eq!(bits_for(5, 6, 0o000, 0, &[]), 0o7);
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secret_files_readable_by_the_task_user_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let token = dir.path().join("agent.token");
        std::fs::write(&token, "t0ken").unwrap();
        chmod(&token, 0o644);
        let mut c = config(Some("54321:54321"), false);
        c.secret_files = vec![("token_file".to_owned(), token.clone())];
        let user = c.run_as.clone().unwrap();
        let e = check_files(&c, Some(&user), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token_file") && e.contains("readable by every user, mode 644"),
            "{e}"
        );
        chmod(&token, 0o600);
        check_files(&c, Some(&user), dir.path()).unwrap();
        // Readable, but in a directory the user cannot enter: safe.
        chmod(&token, 0o644);
        chmod(dir.path(), 0o700);
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let e = check_files(&c, Some(&user), &work).unwrap_err();
        assert!(
            matches!(&e, TaskUserError::WorkDirUnreachable { dir: d, .. } if d == dir.path()),
            "{e}"
        );
        // A work directory the tasks' user could write into.
        chmod(&token, 0o600);
        chmod(dir.path(), 0o755);
        chmod(&work, 0o777);
        let e = check_files(&c, Some(&user), &work).unwrap_err().to_string();
        assert!(e.contains("could write into the work directory"), "{e}");
        chmod(&work, 0o755);
        // The agent's own user: a warning only.
        check_files(&c, None, dir.path()).unwrap();
        c.secret_files = vec![("token_file".to_owned(), dir.path().join("missing"))];
        let e = check_files(&c, None, dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("cannot check token_file"), "{e}");
    }
}
