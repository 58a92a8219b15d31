//! `run_as` (`USER` or `USER:GROUP`, names or numbers): the user shell tasks run as, looked
//! up in the system's databases when the agent starts, so that a name that does not exist is
//! refused then, naming it. Whether the agent may switch to it, and what it does as root
//! without one (`allow_root_tasks`), is decided at start by `crate::task_user`.

use std::ffi::OsString;

use super::{invalid, ConfigError};
use crate::{guard::confine::Creds, users};

/// The user and groups of tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// As written in the config (for messages).
    pub spec: String,
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups, the primary one among them.
    pub groups: Vec<u32>,
    /// The user's home, when the user database lists one: the tasks' `HOME`.
    pub home: Option<OsString>,
}

impl RunAs {
    /// What the guardian switches to.
    pub fn creds(&self) -> Creds {
        Creds {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }

    /// `USER` or `USER:GROUP` resolved: the user's primary group unless a group is given, and
    /// the user's supplementary groups as `initgroups` would set them. A number that is no
    /// listed user is taken as is when a group is given too.
    pub fn parse(spec: &str) -> Result<RunAs, ConfigError> {
        let spec = spec.trim();
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user.trim(), Some(group.trim())),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(invalid(
                "run_as",
                format!("{spec:?} is not USER or USER:GROUP"),
            ));
        }
        let lookup = |e: std::io::Error| invalid("run_as", format!("cannot look up {spec:?}: {e}"));
        let gid = match group {
            None => None,
            Some(group) => Some(users::group_id(group).map_err(lookup)?.ok_or_else(|| {
                invalid("run_as", format!("no group named {group:?} on this host"))
            })?),
        };
        match users::user(user).map_err(lookup)? {
            Some(found) => {
                let gid = gid.unwrap_or(found.gid);
                Ok(RunAs {
                    spec: spec.to_owned(),
                    uid: found.uid,
                    gid,
                    groups: users::groups_of(&found.name, gid),
                    home: Some(found.home).filter(|h| !h.is_empty()),
                })
            }
            None => match (user.parse::<u32>(), gid) {
                (Ok(uid), Some(gid)) => Ok(RunAs {
                    spec: spec.to_owned(),
                    uid,
                    gid,
                    groups: vec![gid],
                    home: None,
                }),
                (Ok(uid), None) => Err(invalid(
                    "run_as",
                    format!("uid {uid} is not in the user database; give its group too, e.g. run_as = \"{uid}:{uid}\""),
                )),
                (Err(_), _) => Err(invalid(
                    "run_as",
                    format!("no user named {user:?} on this host"),
                )),
            },
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        RunAs::parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn users_and_groups_by_name_and_number() {
        let root = RunAs::parse("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.is_root() && root.groups.contains(&0));
        let by_number = RunAs::parse(" 0:0 ").unwrap();
        assert_eq!((by_number.uid, by_number.gid), (0, 0));
        let unlisted = RunAs::parse("54321:54322").unwrap();
        assert_eq!(
            (unlisted.uid, unlisted.gid, unlisted.groups, unlisted.home),
            (54321, 54322, vec![54322], None)
        );
        if let Ok(Some(nobody)) = users::user("nobody") {
            let run_as = RunAs::parse("nobody").unwrap();
            assert_eq!((run_as.uid, run_as.gid), (nobody.uid, nobody.gid));
            assert!(!run_as.is_root());
            assert_eq!(RunAs::parse("nobody:0").unwrap().gid, 0);
        }
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        assert_eq!(
            err("ferry-no-such-user"),
            "invalid run_as: no user named \"ferry-no-such-user\" on this host"
        );
        assert_eq!(
            err("root:ferry-no-such-group"),
            "invalid run_as: no group named \"ferry-no-such-group\" on this host"
        );
        assert!(
            err("54321").contains("give its group too"),
            "{}",
            err("54321")
        );
        for bad in ["", ":", "root:", ":root"] {
            assert!(err(bad).contains("is not USER or USER:GROUP"), "{bad:?}");
        }
    }
}
