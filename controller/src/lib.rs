//! Ferry controller: keeps durable queues of jobs, hands tasks to long-polling agents, holds
//! their leases, advances DAGs, retries, and reaps dead agents. `run` is the whole server.

pub mod artifacts;
pub mod clock;
pub mod config;
pub mod engine;
pub mod http;
pub mod model;
pub mod notify;
pub mod rules;
pub mod s3;
pub mod secret;
pub mod serve;
pub mod service;
pub mod store;
pub mod store_lock;

use std::sync::Arc;

use ferry_proto::v1::{
    agent_service_server::AgentServiceServer, job_service_server::JobServiceServer,
    pipeline_service_server::PipelineServiceServer, trigger_service_server::TriggerServiceServer,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use service::agent::UploadPath;
use service::auth::TokenCheck;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("opening the artifact store: {0}")]
    Artifacts(#[from] artifacts::ArtifactError),
    #[error("opening the artifact store: {0}")]
    Objects(#[from] s3::S3Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("{0}")]
    SharedDir(#[from] artifacts::shared_dir::SharedDirError),
    #[error("{0}")]
    StoreLock(#[from] store_lock::StoreLockError),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves until `shutdown` is cancelled, then stops accepting, ends long polls and streams,
/// and waits for its tasks.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    // A SQLite store is one controller's: a second one on it stops here.
    let _store_lock = match config.store_url.strip_prefix("sqlite://") {
        Some(path) => Some(store_lock::hold(std::path::Path::new(path))?),
        None => None,
    };
    let store = store::open(
        &config.store_url,
        config.store_password.as_ref().map(|p| p.0.clone()),
    )
    .await?;
    let artifacts = Arc::new(artifacts::Artifacts::open_with_reserve(
        &config.artifacts.root,
        config.artifacts.max_output_bytes,
        config.artifacts.disk_reserve,
    )?);
    if config.objects.is_none() {
        match artifacts.disk_figures() {
            Ok((reserve, free)) => tracing::info!(
                dir = %config.artifacts.root.display(),
                free_mib = free >> 20,
                reserve_mib = reserve >> 20,
                "uploads keep the disk reserve free on the data directory"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the data directory's free space"),
        }
    }
    let objects = match &config.objects {
        Some(s3) => {
            let client = s3::S3Client::new(s3.clone())?;
            // Fails now, naming the problem, rather than at the first upload.
            client
                .list_objects_v2_page(&client.key("jobs/"), None, 1)
                .await?;
            let objects =
                artifacts::ObjectArtifacts::new(client, config.artifacts.max_output_bytes);
            tracing::info!(location = %objects.location(), endpoint = %s3.endpoint, region = %s3.region, "artifacts in an S3-compatible store");
            Some(Arc::new(objects))
        }
        None => None,
    };
    // Several controllers share a PostgreSQL store: outputs kept in a data directory must be
    // readable by all of them.
    if objects.is_none() && !config.store_url.starts_with("sqlite://") {
        artifacts::shared_dir::check(store.as_ref(), &config.artifacts.root).await?;
    }
    // Where outputs live, for the engine and retention alike.
    let outputs: Arc<dyn artifacts::ArtifactStore> = match objects {
        Some(objects) => objects,
        None => artifacts.clone(),
    };
    let engine = engine::Engine::new(
        config.engine.clone(),
        clock::Clock::system(),
        store.clone(),
        artifacts,
        shutdown.clone(),
    )
    .await?
    .with_artifacts(outputs.clone())
    .with_default_start_timeout(config.schedule_to_start_timeout);
    let engine = Arc::new(engine);
    let tracker = TaskTracker::new();
    tracker.spawn(engine::lease_writer::run(engine.clone(), shutdown.clone()));
    // Singletons: on one controller at a time, taken over when it dies.
    tracker.spawn(engine::singleton::run(
        store.clone(),
        "reaper",
        shutdown.clone(),
        {
            let engine = engine.clone();
            move |token| engine::reaper::run(engine.clone(), token)
        },
    ));
    tracker.spawn(engine::singleton::run(
        store.clone(),
        "scheduler",
        shutdown.clone(),
        {
            let engine = engine.clone();
            move |token| engine::scheduler::run(engine.clone(), token)
        },
    ));
    tracker.spawn(engine::singleton::run(
        store.clone(),
        "retention",
        shutdown.clone(),
        move |token| {
            artifacts::retention_loop::run(
                store.clone(),
                outputs.clone(),
                config.artifacts.retention,
                token,
            )
        },
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<JobServiceServer<service::job::JobApi>>()
        .await;
    health
        .set_serving::<AgentServiceServer<service::agent::AgentApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ferry_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    secret::warn_if_readable_by_others(&config.secret_files);
    if !addr.ip().is_loopback() {
        if let Some(missing) = missing_tokens(&config) {
            tracing::warn!(%addr, "listening beyond loopback without {missing}: anyone who reaches this port can run commands on your agents");
        }
        if config.tls.is_none() {
            tracing::warn!(%addr, "listening beyond loopback without TLS: tokens, commands and results cross the network in clear (see --tls-cert)");
        }
    }
    let tls = match (&config.tls, config.tls_client_auth) {
        (None, _) => "off",
        (Some(_), false) => "on",
        (Some(_), true) => "on, client certificates required",
    };
    serve::check_open_file_limit(&config.connections);
    tracing::info!(%addr, tls, store = %store::redact_url(&config.store_url), agent_timeout = ?config.engine.agent_timeout, max_connections = config.connections.max_connections, handshake_timeout = ?config.connections.handshake_timeout, "controller listening");

    if let Some(http_addr) = config.http_listen {
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|source| RunError::Listen {
                addr: http_addr,
                source,
            })?;
        let bound = listener.local_addr().unwrap_or(http_addr);
        let tls = config.tls.is_some();
        tracing::info!(addr = %bound, tls, "HTTP listening (webhooks at POST /hooks/NAME)");
        let routes = http::router::Router::new()
            .route("/hooks/", Arc::new(http::hooks::Hooks::new(engine.clone())));
        tracker.spawn(http::serve(
            listener,
            config.tls.clone(),
            routes,
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    let mut agent_api =
        service::agent::AgentApi::new(engine.clone(), tracker.clone(), shutdown.clone());
    if config.tls_client_auth {
        agent_api = agent_api.with_names_bound_to_certificates();
    }
    let agent_api = Arc::new(agent_api);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        // An established connection whose peer stops answering pings is closed.
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        // Large frames: an upload chunk of 1 MiB in one frame rather than 64.
        .max_frame_size(Some(1 << 20))
        // Room for 4 MiB upload chunks in flight without waiting on window updates.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            UploadPath::new(
                AgentServiceServer::from_arc(agent_api.clone())
                    .max_decoding_message_size(service::agent::MAX_MESSAGE_BYTES),
                agent_api,
            ),
            TokenCheck::new(config.agent_token.clone().map(|t| t.0), "agent"),
        ))
        .add_service(JobServiceServer::with_interceptor(
            service::job::JobApi::new(engine.clone(), tracker.clone(), shutdown.clone())
                .with_departed_retention(config.departed_agent_retention),
            TokenCheck::new(config.client_token.clone().map(|t| t.0), "client"),
        ))
        .add_service(PipelineServiceServer::with_interceptor(
            service::pipelines::PipelineApi::new(engine.clone()),
            TokenCheck::new(config.client_token.clone().map(|t| t.0), "client"),
        ))
        .add_service(TriggerServiceServer::with_interceptor(
            service::triggers::TriggerApi::new(engine.clone()),
            TokenCheck::new(config.client_token.clone().map(|t| t.0), "client"),
        ));
    // TLS, the cap on connections and the handshake deadline are ours (serve/), so that a
    // client that connects and never speaks cannot hold the port.
    let result = serve::serve(
        router,
        listener,
        config.tls.as_ref(),
        config.connections,
        &tracker,
        &shutdown,
    )
    .await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    engine.close().await;
    tracing::info!("controller stopped");
    Ok(result?)
}

/// What the warning about an open port names: the tokens that are not set, with their flags.
fn missing_tokens(config: &Config) -> Option<String> {
    let missing: Vec<&str> = [
        (
            config.agent_token.is_none(),
            "an agent token (--agent-token-file): any agent may join",
        ),
        (
            config.client_token.is_none(),
            "a client token (--client-token-file): anyone may submit jobs",
        ),
    ]
    .into_iter()
    .filter_map(|(missing, what)| missing.then_some(what))
    .collect();
    (!missing.is_empty()).then(|| missing.join(", nor "))
}
