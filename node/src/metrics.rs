//! Metrics and health for operators (DESIGN.md, "Doors and core"): the node's Prometheus
//! registry, built once at start, and the plain-HTTP listener that serves it (`metrics_listen`,
//! loopback by default) with `/metrics`, `/healthz` and `/readyz`.
//!
//! The listener speaks plain HTTP and asks for no certificate, so that Prometheus and load
//! balancers can reach it; it therefore publishes nothing about a person, a voucher or a
//! caller. Label values come from fixed sets only (service and method names of the served
//! protocol, gRPC codes, reject reasons, refusal kinds, key ids of the node's own signing keys):
//! never a serial, a code, a provider or an identity name, and nothing a caller can choose, so a
//! caller cannot grow the label sets either.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use schein_proto::v1::{ErrorReason, Outcome, Receipt};
use tokio::net::TcpListener;
use tonic::codegen::http::{Request, Response};

use crate::config::Config;
use crate::node::Node;
use crate::store::FlushSeconds;

/// Where the metrics listen unless configured otherwise (Prometheus' range of exporter ports).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The gRPC services this node serves: only their names become label values.
const SERVICES: [&str; 8] = [
    "schein.v1.Office",
    "schein.v1.Provider",
    "schein.v1.Federation",
    "schein.v1.Reports",
    "schein.v1.Identities",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// One gRPC call's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

/// One settlement decision's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettleLabels {
    /// `accepted`, `rejected` (a receipt that refuses to pay) or `refused` (no decision: the
    /// record was not genuine, too many today, …).
    result: &'static str,
    reason: String,
}

/// A refused connection's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Which certificate an expiry gauge is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: &'static str,
}

/// Which of the node's own signing keys an expiry gauge is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key_id: String,
}

/// Why a connection was refused, in the few kinds the metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The client sent no certificate.
    NoCertificate,
    /// The client's certificate was refused (unknown CA, expired, revoked, no schein identity).
    Certificate,
    /// Anything else that failed the TLS handshake: not TLS at all, a protocol error.
    Protocol,
    /// The handshake did not finish in time.
    Timeout,
    /// The handshake passed but the identity was refused as it was looked up.
    Identity,
}

impl RefusalKind {
    fn label(self) -> &'static str {
        match self {
            RefusalKind::NoCertificate => "no_certificate",
            RefusalKind::Certificate => "certificate",
            RefusalKind::Protocol => "protocol",
            RefusalKind::Timeout => "timeout",
            RefusalKind::Identity => "identity",
        }
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Latencies = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The node's metrics: everything registered once, at start.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Latencies,
    settlements: Family<SettleLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    outbox_depth: Gauge,
    outbox_oldest_seconds: FloatGauge,
    peers: Gauge,
    peers_reachable: Gauge,
    store_bytes: Gauge,
    certificate_days: Family<CertificateLabels, FloatGauge>,
    signing_key_days: Family<KeyLabels, FloatGauge>,
    /// Last moment of the node's TLS certificate and of its CA, Unix seconds.
    tls_not_after: Option<i64>,
    ca_not_after: Option<i64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn request_histogram() -> Histogram {
    // 0.5 ms to about 8 s: a local call takes about a millisecond, one that waits for the
    // issuer up to twice the peer timeout.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The last moment of the first certificate in `pem`, Unix seconds.
fn not_after_of_pem(pem: &str) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    crate::pki::not_after(&der)
}

impl Metrics {
    /// Registers every metric of the node of `config`, with its store's flush timings.
    pub fn new(config: &Config, store_flushes: FlushSeconds) -> Self {
        let mut registry = Registry::with_prefix("schein");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests answered, by service, method and status code",
            requests.clone(),
        );
        let request_seconds: Latencies = Family::new_with_constructor(request_histogram);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC request's arrival to its response headers, by service, method and status code",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let settlements = Family::<SettleLabels, Counter>::default();
        registry.register(
            "settlements",
            "Settlement records decided as issuer, by result (accepted, rejected, refused) and reason",
            settlements.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "tls_handshakes_refused",
            "Connections refused at or right after the TLS handshake, by kind of reason",
            refused.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Settlement records waiting in the outbox for their issuer's receipt",
            outbox_depth.clone(),
        );
        let outbox_oldest_seconds = FloatGauge::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "How long the longest-waiting settlement record has been in the outbox (0: none)",
            Unit::Seconds,
            outbox_oldest_seconds.clone(),
        );
        let peers = Gauge::default();
        registry.register("peers", "Other member nodes in the roster", peers.clone());
        let peers_reachable = Gauge::default();
        registry.register(
            "peers_reachable",
            "Other member nodes whose last call from this node was answered",
            peers_reachable.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "store_size",
            "Size of the store on disk",
            Unit::Bytes,
            store_bytes.clone(),
        );
        registry.register_with_unit(
            "store_flush_duration",
            "Time of each flush of the store to disk",
            Unit::Seconds,
            store_flushes,
        );
        let certificate_days = Family::<CertificateLabels, FloatGauge>::default();
        registry.register(
            "certificate_expiry_days",
            "Days until the node's TLS certificate (certificate=\"tls\") or its CA (certificate=\"ca\") expires; negative: expired",
            certificate_days.clone(),
        );
        let signing_key_days = Family::<KeyLabels, FloatGauge>::default();
        registry.register(
            "signing_key_expiry_days",
            "Days until the end of the window of each of the node's signing keys in its roster entry; keys without an end have no series",
            signing_key_days.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            settlements,
            refused,
            outbox_depth,
            outbox_oldest_seconds,
            peers,
            peers_reachable,
            store_bytes,
            certificate_days,
            signing_key_days,
            tls_not_after: not_after_of_pem(&config.tls.cert_pem),
            ca_not_after: not_after_of_pem(&config.ca_cert_pem),
        }
    }

    /// Counts one answered gRPC request of `path` (`/package.Service/Method`) with the gRPC
    /// `code` it ended with.
    fn request(&self, path: &str, code: tonic::Code, seconds: f64) {
        let labels = request_labels(path, code);
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Counts one settlement decision as issuer: a signed receipt, or a refusal.
    pub fn settled(&self, result: Result<&[u8], ErrorReason>) {
        let labels = match result {
            Ok(signed_receipt) => match schein_proto::signed::peek::<Receipt>(signed_receipt) {
                Ok(receipt) if receipt.outcome() == Outcome::Rejected => SettleLabels {
                    result: "rejected",
                    reason: enum_label(receipt.reason().as_str_name(), "REJECT_REASON_"),
                },
                Ok(_) => SettleLabels {
                    result: "accepted",
                    reason: String::new(),
                },
                Err(_) => return,
            },
            Err(reason) => SettleLabels {
                result: "refused",
                reason: enum_label(reason.as_str_name(), "ERROR_REASON_"),
            },
        };
        self.settlements.get_or_create(&labels).inc();
    }

    /// Counts one refused connection.
    pub fn refused(&self, kind: RefusalKind) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: kind.label(),
            })
            .inc();
    }

    /// Reads the values that are states rather than events (outbox, peers, store size,
    /// expiry), just before a scrape.
    fn refresh(&self, node: &Node) {
        let store = &node.store;
        self.outbox_depth
            .set(i64::try_from(store.outbox_depth()).unwrap_or(i64::MAX));
        let now = time::OffsetDateTime::now_utc();
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        match store.outbox_oldest_ms() {
            Ok(Some(oldest)) => {
                self.outbox_oldest_seconds
                    .set(now_ms.saturating_sub(oldest).max(0) as f64 / 1000.0);
            }
            Ok(None) => {
                self.outbox_oldest_seconds.set(0.0);
            }
            Err(error) => tracing::warn!(%error, "metrics: cannot read the outbox"),
        }
        match store.size_on_disk() {
            Ok(bytes) => {
                self.store_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::warn!(%error, "metrics: cannot read the store's size"),
        }
        let roster = node.roster();
        let others: Vec<&str> = roster
            .members()
            .filter(|m| m.entry.kind == crate::roster::MemberKind::Node && m.id() != node.id)
            .map(|m| m.id())
            .collect();
        self.peers.set(others.len() as i64);
        self.peers_reachable
            .set(node.peers.reachable(others.iter().copied()) as i64);

        let now_seconds = now.unix_timestamp();
        let days = |until: i64| (until - now_seconds) as f64 / 86_400.0;
        for (certificate, not_after) in [("tls", self.tls_not_after), ("ca", self.ca_not_after)] {
            if let Some(not_after) = not_after {
                self.certificate_days
                    .get_or_create(&CertificateLabels { certificate })
                    .set(days(not_after));
            }
        }
        // Keys come and go with the roster: publish exactly the ones in force.
        self.signing_key_days.clear();
        if let Some(me) = roster.member(&node.id) {
            for key in &me.signing_keys {
                if let Some(last) = key.valid_until {
                    // A key's window includes its last day, to its end.
                    let end = (i64::from(last.days_since_epoch()) + 1) * 86_400;
                    self.signing_key_days
                        .get_or_create(&KeyLabels {
                            key_id: key.key_id.0.clone(),
                        })
                        .set(days(end));
                }
            }
        }
    }

    /// The Prometheus text exposition of every metric, refreshed from `node`.
    pub fn encode(&self, node: &Node) -> String {
        self.refresh(node);
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "metrics: encoding failed");
        }
        text
    }
}

/// `REJECT_REASON_OVER_CAP` → `over_cap`.
fn enum_label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// The labels of a request for `path`; a service this node does not serve, or a method it does
/// not know (which tonic answers with UNIMPLEMENTED), is `unknown`, so that callers cannot add
/// label values.
fn request_labels(path: &str, code: tonic::Code) -> RequestLabels {
    let known = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, method)| {
            SERVICES.contains(service)
                && code != tonic::Code::Unimplemented
                && !method.is_empty()
                && method.len() <= 64
                && method.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    let (service, method) = known.unwrap_or(("unknown", "unknown"));
    RequestLabels {
        service: service.to_owned(),
        method: method.to_owned(),
        code: code_label(code),
    }
}

/// gRPC's names of the codes: `OK`, `INVALID_ARGUMENT`, …
fn code_label(code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut label = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            label.push('_');
        }
        label.push(c.to_ascii_uppercase());
    }
    if label == "O_K" { "OK".into() } else { label }
}

/// The layer in front of the gRPC services that counts and times every request.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    metrics: Arc<Metrics>,
}

impl RequestMetrics {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RequestMetrics {
    type Service = WithRequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithRequestMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose requests are counted and timed (see [`RequestMetrics`]).
#[derive(Clone, Debug)]
pub struct WithRequestMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for WithRequestMetrics<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // Every schein method is unary: a refusal travels in the response headers
            // ("trailers-only"), an answer's OK in the trailers. So headers without a status
            // mean OK; a streaming call (health watch, reflection) is timed to its first headers.
            let code = match &answer {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Internal,
            };
            metrics.request(&path, code, started.elapsed().as_secs_f64());
            answer
        })
    }
}

/// Why the node is not ready to serve, if it is not: the store must take changes and the
/// roster must list this node.
fn unready(node: &Node) -> Option<&'static str> {
    if let Some(why) = node.store.unready() {
        return Some(why);
    }
    if node.roster().member(&node.id).is_none() {
        return Some("the roster in force does not list this node");
    }
    None
}

/// Binds the metrics listener on `addr`; a port that is taken must not keep the node from
/// serving its members, so a failure is logged and the node runs without metrics.
pub async fn bind(addr: SocketAddr) -> Option<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::error!(%addr, %error, "cannot listen for metrics and health; running without them");
            None
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `node` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let metrics_node = node.clone();
    let ready_node = node;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let node = metrics_node.clone();
                async move {
                    let text = node.metrics.encode(&node);
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let node = ready_node.clone();
                async move {
                    match unready(&node) {
                        None => (StatusCode::OK, "ready\n".to_owned()),
                        Some(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    let stopped = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(%error, "the metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        let ok = request_labels("/schein.v1.Provider/VerifyVoucher", tonic::Code::Ok);
        assert_eq!(
            (ok.service.as_str(), ok.method.as_str(), ok.code.as_str()),
            ("schein.v1.Provider", "VerifyVoucher", "OK")
        );
        let refused = request_labels(
            "/schein.v1.Office/IssueVoucher",
            tonic::Code::PermissionDenied,
        );
        assert_eq!(refused.code, "PERMISSION_DENIED");
        // A caller's own service or method names never become labels.
        for path in [
            "/evil.Service/Anything",
            "/schein.v1.Provider/LEJ-7KQ4-M2XD",
            "no-slash",
        ] {
            let labels = request_labels(path, tonic::Code::Unimplemented);
            assert_eq!(
                (labels.service.as_str(), labels.method.as_str()),
                ("unknown", "unknown")
            );
        }
        assert_eq!(
            enum_label("REJECT_REASON_OVER_CAP", "REJECT_REASON_"),
            "over_cap"
        );
    }
}
