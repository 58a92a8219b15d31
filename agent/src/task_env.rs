//! The environment a task starts with (issue 16, class 4). Never the agent's own, which may
//! hold secrets (the variable a datasource's `password_env` names, cloud credentials, the
//! agent's `FERRY_*` settings): a task gets exactly
//!
//! - `PATH`: the config's `task_path`; else the agent's own when `pass_env` names `PATH`; else
//!   [`DEFAULT_PATH`];
//! - `HOME`: the agent's, or, when the agent has none, its user's home in `/etc/passwd`; for
//!   tasks that run as another user (`run_as`), that user's home;
//! - `LANG`, `LC_ALL` and `TZ`, each when the agent has it;
//! - each variable `pass_env` names, when the agent has it;
//! - the attempt's `FERRY_*` variables (ids, working directory, inputs, parameters), which win
//!   over everything above.
//!
//! The guardian that starts a task is itself started with an empty environment (but for its
//! mark, never passed on), so a task cannot read the agent's variables in its parent's
//! `/proc/PID/environ` either. (The agent's own `/proc/PID/environ` stays readable to tasks of
//! the same user: only running tasks as another user closes that.)

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStringExt,
};

/// `PATH` of a task unless the config says otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Variables passed on when the agent has them, besides `HOME` and what `pass_env` names.
const LOCALE: &[&str] = &["LANG", "LC_ALL", "TZ"];

/// The variables every task of this agent starts with; an attempt's own go on top
/// ([`TaskEnv::with`]). Its `Debug` shows names only.
#[derive(Clone, Default)]
pub struct TaskEnv {
    base: BTreeMap<OsString, OsString>,
}

impl std::fmt::Debug for TaskEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.base.keys()).finish()
    }
}

impl TaskEnv {
    /// From the agent's settings: `agent` looks a variable up in the agent's environment,
    /// `home` finds the user's home when the agent has no `HOME`.
    pub fn new(
        task_path: Option<&str>,
        pass_env: &[String],
        agent: impl Fn(&str) -> Option<OsString>,
        home: impl FnOnce() -> Option<OsString>,
    ) -> TaskEnv {
        let mut base = BTreeMap::new();
        if let Some(home) = agent("HOME").or_else(home) {
            base.insert("HOME".into(), home);
        }
        for name in LOCALE
            .iter()
            .copied()
            .chain(pass_env.iter().map(String::as_str))
        {
            if let Some(value) = agent(name) {
                base.insert(name.into(), value);
            }
        }
        let path = match task_path {
            Some(path) => path.into(),
            None => base
                .remove(OsStr::new("PATH"))
                .unwrap_or_else(|| DEFAULT_PATH.into()),
        };
        base.insert("PATH".into(), path);
        TaskEnv { base }
    }

    /// For this process: its variables, and its user's home from `/etc/passwd`.
    pub fn from_process(task_path: Option<&str>, pass_env: &[String]) -> TaskEnv {
        TaskEnv::new(task_path, pass_env, |k| std::env::var_os(k), passwd_home)
    }

    /// `HOME` of tasks that run as another user: that user's home, or none when the user
    /// database lists none.
    pub fn set_home(&mut self, home: Option<OsString>) {
        match home {
            Some(home) => self.base.insert("HOME".into(), home),
            None => self.base.remove(OsStr::new("HOME")),
        };
    }

    /// The names every task gets, sorted.
    pub fn names(&self) -> impl Iterator<Item = &OsString> {
        self.base.keys()
    }

    /// A task's whole environment: these variables, and `attempt`'s over them.
    pub fn with(&self, attempt: Vec<(String, String)>) -> Vec<(OsString, OsString)> {
        let mut env = self.base.clone();
        env.extend(attempt.into_iter().map(|(k, v)| (k.into(), v.into())));
        env.into_iter().collect()
    }
}

/// The home directory of this process's user in `/etc/passwd`, if it is listed there.
fn passwd_home() -> Option<OsString> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    home_in_passwd(&std::fs::read("/etc/passwd").ok()?, uid)
}

/// The sixth field of the `passwd` line whose third is `uid`.
fn home_in_passwd(passwd: &[u8], uid: u32) -> Option<OsString> {
    let uid = uid.to_string();
    passwd.split(|b| *b == b'\n').find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        (fields.len() >= 7 && fields[2] == uid.as_bytes() && !fields[5].is_empty())
            .then(|| OsString::from_vec(fields[5].to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn agent_env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("PATH", "/opt/agent/bin:/usr/bin"),
            ("HOME", "/home/ferry"),
            ("LANG", "C.UTF-8"),
            ("ORDERS_PASSWORD", "hunter2-secret"),
            ("AWS_SECRET_ACCESS_KEY", "abc"),
            ("FERRY_TOKEN_FILE", "/etc/ferry/token"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ])
    }

    fn build(task_path: Option<&str>, pass: &[&str]) -> HashMap<String, String> {
        let env = agent_env();
        let pass: Vec<String> = pass.iter().map(|s| s.to_string()).collect();
        let task = TaskEnv::new(
            task_path,
            &pass,
            |k| env.get(k).map(OsString::from),
            || None,
        );
        task.with(vec![("FERRY_JOB_ID".into(), "j1".into())])
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn only_the_listed_variables_reach_a_task() {
        let env = build(None, &[]);
        let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["FERRY_JOB_ID", "HOME", "LANG", "PATH"]);
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["HOME"], "/home/ferry");
        assert_eq!(env["LANG"], "C.UTF-8");
        assert_eq!(env["FERRY_JOB_ID"], "j1");
    }

    #[test]
    fn pass_env_and_task_path() {
        let env = build(None, &["HTTPS_PROXY", "NOT_SET", "PATH"]);
        assert_eq!(env["HTTPS_PROXY"], "http://proxy:3128");
        assert!(!env.contains_key("NOT_SET"));
        assert_eq!(env["PATH"], "/opt/agent/bin:/usr/bin");
        let env = build(Some("/opt/tools/bin"), &[]);
        assert_eq!(env["PATH"], "/opt/tools/bin");
        assert!(!env.contains_key("ORDERS_PASSWORD"));
    }

    #[test]
    fn the_attempt_wins_and_home_falls_back() {
        let task = TaskEnv::new(
            None,
            &["FOO".to_owned()],
            |k| (k == "FOO").then(|| "agent".into()),
            || Some("/var/lib/ferry".into()),
        );
        let env: HashMap<_, _> = task
            .with(vec![("FOO".into(), "attempt".into())])
            .into_iter()
            .collect();
        assert_eq!(env[&OsString::from("FOO")], "attempt");
        assert_eq!(env[&OsString::from("HOME")], "/var/lib/ferry");
        assert_eq!(format!("{task:?}"), r#"{"FOO", "HOME", "PATH"}"#);
    }

    #[test]
    fn passwd_lines() {
        let passwd = b"root:x:0:0:root:/root:/bin/bash\nbroken\nferry:x:998:998::/var/lib/ferry:/usr/sbin/nologin\n";
        assert_eq!(home_in_passwd(passwd, 998).unwrap(), "/var/lib/ferry");
        assert_eq!(home_in_passwd(passwd, 0).unwrap(), "/root");
        assert_eq!(home_in_passwd(passwd, 5), None);
    }
}
