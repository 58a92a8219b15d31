//! Datasources the agent's config names: kind, URL, password (from an environment variable
//! or a file) and read-only flag. URLs and passwords never leave the agent and never show in
//! `Debug` output, logs or errors: errors name the datasource, and driver messages pass
//! through [`Datasource::redact`].

use std::path::PathBuf;

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    Mysql,
    Sqlite,
}

impl DbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgresql",
            DbKind::Mysql => "mysql",
            DbKind::Sqlite => "sqlite",
        }
    }
}

/// One checked datasource.
#[derive(Clone)]
pub struct Datasource {
    pub name: String,
    pub kind: DbKind,
    /// The URL as configured (PostgreSQL, MySQL); secret because it may hold a password.
    pub url: Secret,
    /// SQLite: the database file.
    pub path: Option<PathBuf>,
    pub password: Option<Secret>,
    pub read_only: bool,
}

impl std::fmt::Debug for Datasource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datasource")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// The password embedded in a URL (`scheme://user:password@host`), if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

impl Datasource {
    /// Checks one `[datasources.NAME]` entry; `env` looks up `password_env`.
    pub fn new(
        name: &str,
        url: &str,
        password_env: Option<&str>,
        password_file: Option<&std::path::Path>,
        read_only: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Datasource, String> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once(':')
            .ok_or("url must start with postgres://, mysql://, mariadb:// or sqlite://")?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => DbKind::Postgres,
            "mysql" | "mariadb" => DbKind::Mysql,
            "sqlite" => DbKind::Sqlite,
            other => {
                return Err(format!(
                    "url scheme {other:?} is not supported; use postgres://, mysql://, mariadb:// or sqlite://"
                ))
            }
        };
        let path = match kind {
            DbKind::Sqlite => {
                // sqlite:///abs/file.db, sqlite://relative.db or sqlite:relative.db
                let file = rest.strip_prefix("//").unwrap_or(rest);
                let file = file.split('?').next().unwrap_or_default();
                if file.is_empty() {
                    return Err("sqlite url names no file; use sqlite:///path/to/file.db".into());
                }
                Some(PathBuf::from(file))
            }
            _ => {
                if !rest.starts_with("//") {
                    return Err(format!("url must start with {scheme}://"));
                }
                None
            }
        };
        let password = match (password_env, password_file) {
            (Some(_), Some(_)) => {
                return Err("set password_env or password_file, not both".into());
            }
            (Some(var), None) => {
                Some(Secret(env(var).ok_or_else(|| {
                    format!("password_env names {var}, which is not set")
                })?))
            }
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read password_file {}: {e}", file.display()))?;
                Some(Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
            }
            (None, None) => None,
        };
        if password.is_some() && kind == DbKind::Sqlite {
            return Err("sqlite datasources take no password".into());
        }
        Ok(Datasource {
            name: name.to_owned(),
            kind,
            url: Secret(url.to_owned()),
            path,
            password,
            read_only,
        })
    }

    /// The secret values this datasource holds: its password and the one inside its URL.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        [
            self.password.as_ref().map(|p| p.0.as_str()),
            url_password(&self.url.0),
        ]
        .into_iter()
        .flatten()
    }

    /// `message` with the URL and every password replaced by `***`.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.replace(&self.url.0, "***");
        let secrets = [
            self.password.as_ref().map(|p| p.0.as_str()),
            url_password(&self.url.0),
        ];
        for secret in secrets.into_iter().flatten() {
            if secret.len() >= 3 {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(url: &str) -> Result<Datasource, String> {
        Datasource::new("orders", url, None, None, false, |_| None)
    }

    #[test]
    fn kinds_and_paths() {
        assert_eq!(ds("postgres://u@h/db").unwrap().kind, DbKind::Postgres);
        assert_eq!(ds("postgresql://u@h/db").unwrap().kind, DbKind::Postgres);
        assert_eq!(ds("mariadb://u@h/db").unwrap().kind, DbKind::Mysql);
        let s = ds("sqlite:///var/data/x.db").unwrap();
        assert_eq!(s.path.unwrap(), PathBuf::from("/var/data/x.db"));
        let s = ds("sqlite://rel/x.db").unwrap();
        assert_eq!(s.path.unwrap(), PathBuf::from("rel/x.db"));
        assert!(ds("oracle://x").unwrap_err().contains("oracle"));
        assert!(ds("sqlite://").is_err());
        assert!(ds("nothing").is_err());
    }

    #[test]
    fn passwords_and_redaction() {
        let d = Datasource::new(
            "orders",
            "postgres://app:inline-pw@db:5432/x",
            Some("PW"),
            None,
            false,
            |v| (v == "PW").then(|| "s3cret-pw".to_owned()),
        )
        .unwrap();
        assert_eq!(d.password.as_ref().unwrap().0, "s3cret-pw");
        let msg =
            d.redact("failed for postgres://app:inline-pw@db:5432/x with s3cret-pw and inline-pw");
        assert!(
            !msg.contains("s3cret") && !msg.contains("inline-pw"),
            "{msg}"
        );
        assert!(!format!("{d:?}").contains("db:5432"));
        let e = Datasource::new("o", "postgres://h/x", Some("NOPE"), None, false, |_| None)
            .unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
    }
}
