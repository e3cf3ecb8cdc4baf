//! Running a node: `run(config, listener, shutdown)` is what the binary, the demo and the tests
//! call. The listener is bound by the caller, so tests pre-bind `127.0.0.1:0` and never race
//! for ports.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schein_proto::v1::federation_server::FederationServer;
use schein_proto::v1::identities_server::IdentitiesServer;
use schein_proto::v1::office_server::OfficeServer;
use schein_proto::v1::provider_server::ProviderServer;
use schein_proto::v1::reports_server::ReportsServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Config;
use crate::node::Node;
use crate::roster::Roster;
use crate::service::{
    FederationService, IdentitiesService, OfficeService, ProviderService, ReportsService,
};
use crate::store::{Store, StoreError};
use crate::tls::{
    RosterClientVerifier, TlsError, install_crypto_provider, server_config, spawn_acceptor,
};

/// Largest set of request headers accepted: a gRPC call's headers take a few hundred bytes.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the data directory {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the listener is unusable: {0}")]
    Listener(std::io::Error),
    #[error("cannot listen for the web console on {addr}: {source}")]
    Web {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server reflection: {0}")]
    Reflection(String),
    #[error("the register of enrolled identities: {0}")]
    Register(String),
    #[error("the node ended before it served")]
    EndedEarly,
    #[error("the node's task panicked: {0}")]
    Panicked(String),
}

/// Ways to change a running node from outside.
#[derive(Clone, Debug)]
pub struct Control {
    node: Arc<Node>,
    verifier: Arc<RosterClientVerifier>,
    /// Where the web console listens, if it is on.
    pub web_addr: Option<SocketAddr>,
    /// Where metrics and health are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
}

impl Control {
    /// The version of the roster in force.
    pub fn roster_version(&self) -> u64 {
        self.node.roster().version()
    }

    /// Puts a new roster in force: new connections are checked against it at once.
    pub fn replace_roster(&self, roster: Roster) -> Result<(), TlsError> {
        self.verifier.update(&roster)?;
        self.node.replace_roster(roster);
        Ok(())
    }
}

/// Serves `config`'s node on `listener` until `shutdown` completes, then drains connections
/// and flushes storage. `on_ready` receives a [`Control`] once the node serves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    on_ready: Option<oneshot::Sender<Control>>,
) -> Result<(), RunError> {
    install_crypto_provider();
    let store = Store::open(&config.data_dir).map_err(|source| RunError::Store {
        path: config.data_dir.clone(),
        source,
    })?;
    let verifier = Arc::new(RosterClientVerifier::new(&config.roster)?);
    let revocations = crate::revocation::Revocations::load(config.node_id(), &config.base_dir)
        .map_err(|e| RunError::Register(e.to_string()))?;
    verifier.refuse_revoked(revocations.clone());
    let tls = Arc::new(server_config(&config.tls, verifier.clone())?);
    let node = Arc::new(Node::new(&config, store.clone(), revocations));
    crate::revocation::adopt_stored(&node);
    let max = config.settings.max_message_bytes;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OfficeServer<OfficeService>>().await;
    health
        .set_serving::<ProviderServer<ProviderService>>()
        .await;
    health
        .set_serving::<FederationServer<FederationService>>()
        .await;
    health.set_serving::<ReportsServer<ReportsService>>().await;
    health
        .set_serving::<IdentitiesServer<IdentitiesService>>()
        .await;

    let web = match config.web_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Web { addr, source })?;
            let tls = Arc::new(crate::tls::web_server_config(
                &config.tls,
                verifier.clone(),
            )?);
            Some((listener, tls))
        }
        None => None,
    };
    let web_addr = web.as_ref().and_then(|(l, _)| l.local_addr().ok());
    let metrics_listener = match config.metrics_listen {
        Some(addr) => crate::metrics::bind(addr).await,
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (reflection, reflection_v1alpha) =
        reflection().map_err(|e| RunError::Reflection(e.to_string()))?;
    let local = listener.local_addr().ok();
    let limits = &config.settings;
    let incoming = ReceiverStream::new(spawn_acceptor(
        listener,
        tls,
        verifier.clone(),
        crate::tls::HandshakeLimits {
            max_in_progress: limits.max_handshakes,
            timeout: Duration::from_secs(limits.handshake_timeout_seconds),
        },
        node.metrics.clone(),
    ));
    tracing::info!(node = %node.id, listen = ?local, members = node.roster().members().count(), "node serving");
    if let Some(addr) = web_addr {
        tracing::info!(node = %node.id, console = %crate::web::describe(addr), "web console serving");
    }
    if let Some(addr) = metrics_addr {
        tracing::info!(node = %node.id, metrics = %format!("http://{addr}/metrics"), "metrics and health serving");
    }
    if let Some(ready) = on_ready {
        let _ = ready.send(Control {
            node: node.clone(),
            verifier: verifier.clone(),
            web_addr,
            metrics_addr,
        });
    }
    let keepalive = (limits.keepalive_interval_seconds > 0)
        .then(|| Duration::from_secs(limits.keepalive_interval_seconds));
    let serve = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        // Without it tonic lets one connection open any number of streams (PITFALLS.md).
        .max_concurrent_streams(limits.max_concurrent_streams)
        // tonic turns hyper's bound on streams reset for the client's protocol errors (such as
        // opening more than allowed) off; with it, such a client is sent away after 1,024.
        .http2_max_local_error_reset_streams(Some(1024))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(Duration::from_secs(limits.keepalive_timeout_seconds)))
        // At its age a connection gets a GOAWAY: requests in flight finish (within the 30 s
        // timeout), the client reconnects for the next. No `max_connection_age_grace`: with it,
        // tonic 0.14.9 skips the GOAWAY and cuts the connection at age + grace instead.
        .max_connection_age(Duration::from_secs(limits.max_connection_age_seconds))
        // Outermost, so that it counts the codes callers see.
        .layer(crate::metrics::RequestMetrics::new(node.metrics.clone()))
        .layer(crate::wire::RefusalCodes)
        .layer(crate::wire::OneMessage)
        .add_service(health_service.max_decoding_message_size(max))
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            OfficeServer::new(OfficeService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ProviderServer::new(ProviderService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(tonic::service::interceptor::InterceptedService::new(
            FederationServer::new(FederationService::new(node.clone()))
                .max_decoding_message_size(max),
            crate::service::federation::check_wire_version,
        ))
        .add_service(
            ReportsServer::new(ReportsService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            IdentitiesServer::new(IdentitiesService::new(node.clone()))
                .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming, shutdown);
    // The outbox, the witness, a restored node's recovery and the control socket run inside
    // this future, not on tasks of their own, so that a node that is dropped (killed) stops with
    // them.
    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let witness_interval = Duration::from_secs(config.settings.witness_interval_seconds);
    let console = async {
        if let Some((listener, tls)) = web {
            crate::web::serve(
                listener,
                node.clone(),
                tls,
                verifier.clone(),
                stopped.clone(),
            )
            .await;
        }
    };
    let roster_control = Control {
        node: node.clone(),
        verifier: verifier.clone(),
        web_addr,
        metrics_addr,
    };
    let roster_sync = crate::quorum::run_sync(
        node.clone(),
        config.roster_path.clone(),
        std::time::Duration::from_secs(config.settings.roster_interval_seconds),
        move |roster| {
            roster_control
                .replace_roster(roster)
                .map_err(|e| e.to_string())
        },
        stopped.clone(),
    );
    let metrics = async {
        if let Some(listener) = metrics_listener {
            crate::metrics::serve(listener, node.clone(), stopped.clone()).await;
        }
    };
    let (served, (), (), (), (), (), (), (), ()) = tokio::join!(
        async {
            let served = serve.await;
            let _ = stop_background.send(true);
            served
        },
        crate::domain::outbox::run_outbox(node.clone(), stopped.clone()),
        crate::domain::witness::run_witness(node.clone(), witness_interval, stopped.clone()),
        crate::revocation::run_sync(node.clone(), stopped.clone()),
        roster_sync,
        crate::domain::recovery::run_recovery(node.clone(), stopped.clone()),
        crate::control::serve(node.clone(), stopped.clone()),
        console,
        metrics,
    );
    if let Err(error) = store.flush().await {
        tracing::error!(%error, "flushing storage at shutdown failed");
    }
    tracing::info!(node = %node.id, "node stopped");
    served.map_err(RunError::from)
}

/// gRPC server reflection (v1, and v1alpha for older tools) of the services served here, so that
/// `grpcurl` works without the .proto files. It is served on the mTLS port like everything
/// else: any caller with an accepted client certificate, whatever its role, may list the
/// services and their messages — the same protocol that is public in the source.
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(schein_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// A node running in this process on its own task: for the demo and the tests.
#[derive(Debug)]
pub struct RunningNode {
    pub addr: SocketAddr,
    pub control: Control,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningNode {
    /// Starts `config`'s node on `listener` and waits until it serves.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Self, RunError> {
        let addr = listener.local_addr().map_err(RunError::Listener)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            Some(ready_tx),
        ));
        match ready_rx.await {
            Ok(control) => Ok(Self {
                addr,
                control,
                stop: Some(stop),
                task,
            }),
            // The node failed before serving: its task holds the reason.
            Err(_) => match task.await {
                Ok(Err(error)) => Err(error),
                Ok(Ok(())) => Err(RunError::EndedEarly),
                Err(join) => Err(RunError::Panicked(join.to_string())),
            },
        }
    }

    /// Stops gracefully: drains connections, flushes storage, releases the port and the store.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(RunError::Panicked(join.to_string())),
        }
    }
}
