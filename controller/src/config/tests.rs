//! Unit tests of the controller's configuration: layering, validation messages, secrets.

use super::*;

fn flags() -> Flags {
    Flags {
        config: None,
        listen: None,
        http_listen: None,
        data_dir: None,
        store: None,
        store_password_file: None,
        agent_timeout: None,
        log_limit: None,
        timeout_grace: None,
        max_output_bytes: None,
        disk_reserve: None,
        artifact_retention: None,
        departed_agent_retention: None,
        schedule_to_start_timeout: None,
        agent_token_file: None,
        client_token_file: None,
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
        artifacts: None,
        s3_endpoint: None,
        s3_region: None,
        async_threads: None,
        max_connections: None,
        handshake_timeout: None,
    }
}

#[test]
fn an_s3_artifact_store_comes_from_flags_file_and_never_shows_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "artifacts = \"s3://ferry-bkt/runs\"\ns3_access_key_id = \"AKIDFILE\"\n\
         s3_secret_access_key = \"very-secret-value\"\ns3_region = \"eu-west-1\"\n",
    )
    .unwrap();
    let config = Config::load(Flags {
        config: Some(file),
        s3_endpoint: Some("http://127.0.0.1:9000".into()),
        ..flags()
    })
    .unwrap();
    let objects = config.objects.clone().expect("an object store");
    assert_eq!(objects.location.to_string(), "s3://ferry-bkt/runs");
    assert_eq!(objects.endpoint.to_string(), "http://127.0.0.1:9000");
    assert_eq!(objects.region, "eu-west-1");
    assert_eq!(objects.credentials.access_key_id, "AKIDFILE");
    assert!(objects.path_style);
    assert!(!format!("{config:?}").contains("very-secret-value"));
    assert!(Config::load(flags()).unwrap().objects.is_none());
    let err = Config::load(Flags {
        artifacts: Some("s3://".into()),
        ..flags()
    })
    .unwrap_err();
    assert!(err.to_string().contains("artifacts"), "{err}");
}

#[test]
fn file_then_flags_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "agent_timeout = \"3s\"\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let config = Config::load(Flags {
        config: Some(file),
        listen: Some("127.0.0.1:9001".into()),
        ..flags()
    })
    .unwrap();
    assert_eq!(config.engine.agent_timeout, Duration::from_secs(3));
    assert_eq!(config.listen, "127.0.0.1:9001".parse().unwrap());
    assert_eq!(config.store_url, "sqlite://./ferry-data/ferry.db");
    assert_eq!(config.artifacts.max_output_bytes, 10 << 30);
    assert_eq!(
        config.artifacts.disk_reserve, None,
        "the default follows the disk"
    );
    assert_eq!(
        config.artifacts.retention,
        Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(
        config.artifacts.root,
        PathBuf::from("./ferry-data/artifacts")
    );
}

#[test]
fn artifact_limits_come_from_flags() {
    let config = Config::load(Flags {
        max_output_bytes: Some(1 << 20),
        artifact_retention: Some("1h".into()),
        disk_reserve: Some(8 << 20),
        ..flags()
    })
    .unwrap();
    assert_eq!(config.artifacts.max_output_bytes, 1 << 20);
    assert_eq!(config.artifacts.disk_reserve, Some(8 << 20));
    assert_eq!(config.artifacts.retention, Duration::from_secs(3600));
    let err = Config::load(Flags {
        artifact_retention: Some("forever".into()),
        ..flags()
    })
    .unwrap_err();
    assert!(err.to_string().contains("artifact_retention"), "{err}");
}

#[test]
fn names_bad_values_and_unknown_keys() {
    let err = Config::load(Flags {
        agent_timeout: Some("soon".into()),
        ..flags()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("agent_timeout: bad duration \"soon\""),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "agent_timout = \"3s\"\n").unwrap();
    let err = Config::load(Flags {
        config: Some(file),
        ..flags()
    })
    .unwrap_err();
    assert!(err.to_string().contains("agent_timout"), "{err}");
}

#[test]
fn async_threads_default_to_one_and_are_bounded() {
    assert_eq!(Config::load(flags()).unwrap().async_threads, 1);
    let config = Config::load(Flags {
        async_threads: Some("4".into()),
        ..flags()
    })
    .unwrap();
    assert_eq!(config.async_threads, 4);
    for bad in ["0", "100000"] {
        let err = Config::load(Flags {
            async_threads: Some(bad.into()),
            ..flags()
        })
        .unwrap_err();
        assert!(err.to_string().contains("async_threads"), "{bad}: {err}");
    }
}

#[test]
fn a_postgres_store_takes_its_password_from_a_file_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let mut f = flags();
    f.store = Some("postgresql://ferry@db:5432/ferry".into());
    f.store_password_file = Some(file.display().to_string());
    let config = Config::load(f).unwrap();
    assert_eq!(config.store_password.as_ref().unwrap().0, "s3cret");
    assert!(!format!("{config:?}").contains("s3cret"));

    let mut f = flags();
    f.store = Some("mysql://root:hunter2@db/ferry".into());
    let e = Config::load(f).unwrap_err().to_string();
    assert!(e.contains("postgres://USER@HOST:PORT/DB"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn connection_limits_default_below_the_open_file_limit_and_are_checked() {
    let config = Config::load(flags()).unwrap();
    assert_eq!(
        config.connections,
        crate::serve::ConnectionLimits::default()
    );
    let nofile = crate::serve::open_file_limit().unwrap_or(1024);
    assert_eq!(
        config.connections.max_connections as u64,
        nofile.saturating_sub(crate::serve::RESERVED_FDS).max(64),
        "{:?}",
        config.connections
    );
    assert_eq!(
        config.connections.handshake_timeout,
        Duration::from_secs(10)
    );

    let config = Config::load(Flags {
        max_connections: Some("20".into()),
        handshake_timeout: Some("1s".into()),
        ..flags()
    })
    .unwrap();
    assert_eq!(config.connections.max_connections, 20);
    assert_eq!(config.connections.handshake_timeout, Duration::from_secs(1));

    for (max, timeout, key) in [
        ("0", "10s", "max_connections"),
        ("1000001", "10s", "max_connections"),
        ("10", "999ms", "handshake_timeout"),
        ("10", "0s", "handshake_timeout"),
        ("10", "soon", "handshake_timeout"),
    ] {
        let err = Config::load(Flags {
            max_connections: Some(max.into()),
            handshake_timeout: Some(timeout.into()),
            ..flags()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains(key),
            "{max} {timeout}: {err} does not name {key}"
        );
    }
    let err = Config::load(Flags {
        max_connections: Some("many".into()),
        ..flags()
    })
    .unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
}
