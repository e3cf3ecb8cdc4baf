//! Mutual TLS for the node: who may connect, and who is calling.
//!
//! The server takes only clients whose certificate names a schein identity
//! (`schein://node/role/name`) **and** was signed by the CA of exactly that node in the roster.
//! Checking against the named member's CA alone, rather than against any CA in the roster, is
//! what keeps one member from issuing certificates that impersonate another's staff. A
//! refused certificate fails the handshake and is logged with the reason. An accepted
//! connection carries its [`Caller`] into every request's extensions.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::metrics::RefusalKind;
use crate::pki::{CertifiedKey, Identity, Role};
use crate::roster::{MemberKind, Roster};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs ring as the process's rustls crypto provider. Idempotent; every entry point that
/// builds a TLS configuration calls it first.
pub fn install_crypto_provider() {
    // Fails only if a provider is installed already, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the node's certificate or key cannot be read: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA certificate of member '{0}' cannot be used: {1}")]
    MemberCa(String, String),
}

/// The caller of a request, as established by the handshake.
#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
    pub remote: Option<SocketAddr>,
    /// SHA-256 of the CA that vouched for the caller at the handshake. Each request checks it
    /// against the roster in force, so removing a member or replacing its CA also cuts
    /// connections that are already open.
    pub ca_fingerprint: [u8; 32],
    /// SHA-256 of the caller's certificate: each request checks it against the revocations, so
    /// revoking a certificate also cuts connections already open.
    pub fingerprint: [u8; 32],
    /// When the caller's certificate expires, Unix seconds: a connection opened before does not
    /// outlive it.
    pub not_after: i64,
}

/// A refusal of a client certificate, as rustls carries it to the handshake's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

fn refuse(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Refusal(message),
    ))))
}

/// Per-member verifiers built from the roster.
struct TrustState {
    members: HashMap<String, TrustedMember>,
}

/// What the handshake needs to know of one member.
struct TrustedMember {
    kind: MemberKind,
    /// One verifier per CA: the current one (no last day), then those rotated away from.
    cas: Vec<TrustedCa>,
}

struct TrustedCa {
    fingerprint: [u8; 32],
    last_day: Option<schein_proto::Day>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// Accepts a client certificate only if the CA of the node it names signed it.
pub struct RosterClientVerifier {
    state: RwLock<Arc<TrustState>>,
    provider: Arc<CryptoProvider>,
    /// Certificates refused although their CA vouches for them.
    revocations: std::sync::OnceLock<Arc<crate::revocation::Revocations>>,
}

impl std::fmt::Debug for RosterClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterClientVerifier")
            .finish_non_exhaustive()
    }
}

impl RosterClientVerifier {
    pub fn new(roster: &Roster) -> Result<Self, TlsError> {
        let provider = provider();
        let state = Self::build(roster, &provider)?;
        Ok(Self {
            state: RwLock::new(Arc::new(state)),
            provider,
            revocations: std::sync::OnceLock::new(),
        })
    }

    /// Refuses the certificates `revocations` names from now on (set once, when the node starts).
    pub fn refuse_revoked(&self, revocations: Arc<crate::revocation::Revocations>) {
        let _ = self.revocations.set(revocations);
    }

    /// Trusts the members of `roster` from now on, for new connections.
    pub fn update(&self, roster: &Roster) -> Result<(), TlsError> {
        let state = Arc::new(Self::build(roster, &self.provider)?);
        match self.state.write() {
            Ok(mut guard) => *guard = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
        Ok(())
    }

    fn build(roster: &Roster, provider: &Arc<CryptoProvider>) -> Result<TrustState, TlsError> {
        let mut members = HashMap::new();
        for member in roster.members() {
            let trusted = |ca: &CertificateDer<'static>| {
                let mut roots = RootCertStore::empty();
                roots
                    .add(ca.clone())
                    .map_err(|e| TlsError::MemberCa(member.id().to_owned(), e.to_string()))?;
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::MemberCa(member.id().to_owned(), e.to_string()))
            };
            let mut cas = vec![TrustedCa {
                fingerprint: member.ca_fingerprint,
                last_day: None,
                verifier: trusted(&member.ca_cert)?,
            }];
            for (ca, fingerprint, last_day) in &member.previous_cas {
                cas.push(TrustedCa {
                    fingerprint: *fingerprint,
                    last_day: Some(*last_day),
                    verifier: trusted(ca)?,
                });
            }
            members.insert(
                member.id().to_owned(),
                TrustedMember {
                    kind: member.entry.kind,
                    cas,
                },
            );
        }
        Ok(TrustState { members })
    }

    fn current(&self) -> Arc<TrustState> {
        match self.state.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ClientCertVerifier for RosterClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(&self.current(), end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The web console's side of the handshake: it asks for a client certificate but does not
/// require one, and takes any chain whose holder proves possession of its key, so that a
/// visitor without a certificate, or with one this node does not accept, gets a page that
/// explains what to do instead of a browser's bare TLS error. The chain is then checked in
/// full against the roster ([`RosterClientVerifier::caller_of`]) before anything is served.
#[derive(Debug)]
struct WebClientVerifier {
    roster: Arc<RosterClientVerifier>,
}

impl ClientCertVerifier for WebClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roster.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roster.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.roster.supported_verify_schemes()
    }
}

/// Who is on the other side of a web connection.
#[derive(Clone, Debug)]
pub enum Visitor {
    /// No client certificate was presented.
    Anonymous,
    /// A certificate this node does not accept, and why.
    Refused(String),
    Known(Caller),
}

impl RosterClientVerifier {
    /// Checks a chain against one snapshot of the roster: it names a member, fits its kind,
    /// is signed by exactly that member's CA, and is not revoked. The identity and the CA that
    /// vouched for it, from the same snapshot (a roster replaced meanwhile cannot stamp a chain
    /// the old CA signed with the new CA's fingerprint).
    fn check(
        &self,
        state: &TrustState,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(Identity, [u8; 32]), rustls::Error> {
        let identity = Identity::from_certificate(end_entity).map_err(|e| refuse(e.to_string()))?;
        let member = state.members.get(&identity.node).ok_or_else(|| {
            refuse(format!(
                "node '{}' is not a member of this roster",
                identity.node
            ))
        })?;
        let role_fits = match member.kind {
            MemberKind::Node => true,
            MemberKind::Funder => identity.role == Role::Funder,
        };
        if !role_fits {
            return Err(refuse(format!(
                "member '{}' is a funder and cannot hold role {}",
                identity.node, identity.role
            )));
        }
        // The current CA first; a previous one only to its last day. The current CA's refusal is
        // the one reported.
        let today =
            schein_proto::Day::of_unix_seconds(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        let mut verified = None;
        let mut first_refusal = None;
        for ca in &member.cas {
            if ca.last_day.is_some_and(|last| today > last) {
                continue;
            }
            match ca
                .verifier
                .verify_client_cert(end_entity, intermediates, now)
            {
                Ok(_) => {
                    verified = Some(ca.fingerprint);
                    break;
                }
                Err(error) => {
                    first_refusal.get_or_insert(error);
                }
            }
        }
        let ca_fingerprint = match (verified, first_refusal) {
            (Some(fingerprint), _) => fingerprint,
            (None, Some(error)) => return Err(error),
            (None, None) => return Err(refuse(format!("no CA of '{}' is trusted", identity.node))),
        };
        if self
            .revocations
            .get()
            .is_some_and(|r| r.is_revoked(&identity, &crate::pki::fingerprint(end_entity)))
        {
            return Err(refuse(format!("the certificate of {identity} was revoked")));
        }
        Ok((identity, ca_fingerprint))
    }

    /// The caller a presented chain names, checked in full against the roster now.
    pub fn caller_of(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        remote: Option<SocketAddr>,
    ) -> Visitor {
        let Some((end_entity, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Visitor::Anonymous;
        };
        match self.check(&self.current(), end_entity, intermediates, UnixTime::now()) {
            Ok((identity, ca_fingerprint)) => Visitor::Known(Caller {
                identity,
                remote,
                ca_fingerprint,
                fingerprint: crate::pki::fingerprint(end_entity),
                not_after: crate::pki::not_after(end_entity).unwrap_or(0),
            }),
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
                Visitor::Refused(other.0.to_string())
            }
            Err(other) => Visitor::Refused(other.to_string()),
        }
    }
}

/// The web console's server side: the node's certificate, a client certificate asked for but
/// not required, HTTP/2 and HTTP/1.1.
pub fn web_server_config(
    node_cert: &CertifiedKey,
    verifier: Arc<RosterClientVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let (certs, key) = parse_certified_key(node_cert)?;
    // TLS 1.3 only: in TLS 1.2 the browser's client certificate (its holder's handle) would
    // cross the network in the clear.
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(WebClientVerifier { roster: verifier }))
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    no_resumption(&mut config);
    Ok(config)
}

/// No session resumption: a resumed TLS session skips the client certificate, and so would
/// outlive the identity that opened it (its expiry, its revocation, its node leaving the
/// roster). Every connection shows its certificate; connections are long-lived anyway.
fn no_resumption(config: &mut rustls::ServerConfig) {
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.ticketer = Arc::new(NoTickets);
}

/// A ticketer that makes none (rustls' default already makes none; this states it).
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// How long a web client may take to complete the TLS handshake.
pub const WEB_HANDSHAKE_TIMEOUT: Duration = HANDSHAKE_TIMEOUT;

/// Parses a PEM certificate chain and key.
pub fn parse_certified_key(
    key: &CertifiedKey,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = CertificateDer::pem_slice_iter(key.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate found".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok((certs, private))
}

/// The server side: the node's certificate, and the roster's verifier for clients.
pub fn server_config(
    node_cert: &CertifiedKey,
    verifier: Arc<RosterClientVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let (certs, key) = parse_certified_key(node_cert)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    no_resumption(&mut config);
    Ok(config)
}

/// A TLS connection whose client has been authenticated.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    caller: Caller,
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How many TLS handshakes may be in progress at once, and for how long each.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeLimits {
    pub max_in_progress: usize,
    pub timeout: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            max_in_progress: 256,
            timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// The handshakes in progress, oldest first. When a new connection finds them all taken, the
/// oldest is closed rather than the new one: a flood of connections that never finish their
/// handshake then has to outpace every genuine handshake (a few milliseconds) to keep anyone
/// out, where refusing newcomers would let a handful of idle sockets per timeout lock out
/// every new client.
#[derive(Debug, Default)]
struct Handshakes {
    next: u64,
    running: std::collections::VecDeque<(u64, tokio::task::AbortHandle)>,
}

impl Handshakes {
    fn lock(this: &std::sync::Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        this.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finished(this: &std::sync::Mutex<Self>, id: u64) {
        let mut handshakes = Self::lock(this);
        if let Some(at) = handshakes.running.iter().position(|(i, _)| *i == id) {
            handshakes.running.remove(at);
        }
    }
}

/// Accepts TCP connections, runs each handshake in its own task (at most
/// `limits.max_in_progress` at once, each for at most `limits.timeout`), and hands
/// authenticated streams to the server until the receiving side is dropped (server shut down).
pub fn spawn_acceptor(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    verifier: Arc<RosterClientVerifier>,
    limits: HandshakeLimits,
    metrics: Arc<crate::metrics::Metrics>,
) -> mpsc::Receiver<Result<AuthenticatedStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(std::sync::Mutex::new(Handshakes::default()));
    let refusals = Arc::new(RefusalLog::default());
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = tx.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Nagle off: small gRPC frames must not wait for acks (see PITFALLS.md).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let verifier = verifier.clone();
            let metrics = metrics.clone();
            let refusals = refusals.clone();
            // Registered under the lock before the task can finish, so it always finds itself.
            // (A block, not an await in sight: the guard never crosses one.)
            {
                let mut running = Handshakes::lock(&handshakes);
                while running.running.len() >= limits.max_in_progress.max(1) {
                    if let Some((_, oldest)) = running.running.pop_front() {
                        // Dropping its task closes its socket.
                        oldest.abort();
                        metrics.refused(RefusalKind::Timeout);
                        tracing::debug!("oldest tls handshake closed: too many in progress");
                    }
                }
                let id = running.next;
                running.next += 1;
                let registry = handshakes.clone();
                let task = tokio::spawn(async move {
                    // Counted always; logged at most a few times a minute per source (RefusalLog).
                    let refused = |kind: RefusalKind, reason: &str| {
                        metrics.refused(kind);
                        refusals.note(remote, kind, reason, std::time::Instant::now())
                    };
                    let handshake =
                        tokio::time::timeout(limits.timeout, acceptor.accept(tcp)).await;
                    Handshakes::finished(&registry, id);
                    match handshake {
                        Ok(Ok(stream)) => {
                            // The handshake checked the chain; the caller, with the CA that
                            // vouched for it, comes from one snapshot of the roster taken now.
                            let visitor = verifier
                                .caller_of(stream.get_ref().1.peer_certificates(), Some(remote));
                            match visitor {
                                Visitor::Known(caller) => {
                                    tracing::debug!(%remote, caller = %caller.identity, "client authenticated");
                                    let _ = tx
                                        .send(Ok(AuthenticatedStream {
                                            inner: stream,
                                            caller,
                                        }))
                                        .await;
                                }
                                Visitor::Refused(reason) => {
                                    if let Some(suppressed) =
                                        refused(RefusalKind::Identity, &reason)
                                    {
                                        tracing::warn!(%remote, %reason, suppressed, "connection closed: its certificate is no longer accepted");
                                    }
                                }
                                Visitor::Anonymous => {
                                    if let Some(suppressed) =
                                        refused(RefusalKind::Identity, "no usable client identity")
                                    {
                                        tracing::warn!(%remote, suppressed, "connection without a usable client identity closed");
                                    }
                                }
                            }
                        }
                        // A connection closed before it sent anything is a port probe (a load
                        // balancer's health check, a monitoring script): not worth a warning.
                        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                            tracing::debug!(%remote, "connection closed before the tls handshake");
                        }
                        Ok(Err(error)) => {
                            let (kind, reason) = handshake_failure(&error);
                            if let Some(suppressed) = refused(kind, &reason) {
                                tracing::warn!(%remote, %reason, suppressed, "tls handshake refused");
                            }
                        }
                        Err(_) => {
                            if let Some(suppressed) = refused(RefusalKind::Timeout, "timed out") {
                                tracing::warn!(%remote, suppressed, "tls handshake timed out");
                            }
                        }
                    }
                });
                running.running.push_back((id, task.abort_handle()));
            }
        }
        tracing::debug!("acceptor stopped");
    });
    rx
}

/// The reason of a failed handshake in words, and its kind: our own refusals unwrapped from
/// rustls' error.
fn handshake_failure(error: &io::Error) -> (RefusalKind, String) {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => (
            RefusalKind::Certificate,
            format!("client certificate refused: {}", other.0),
        ),
        Some(rustls::Error::InvalidCertificate(reason)) => (
            RefusalKind::Certificate,
            format!("client certificate refused: {reason}"),
        ),
        Some(rustls::Error::NoCertificatesPresented) => (
            RefusalKind::NoCertificate,
            "no client certificate presented".into(),
        ),
        Some(other) => (RefusalKind::Protocol, other.to_string()),
        None => (RefusalKind::Protocol, error.to_string()),
    }
}

/// How often a source may have its refusals logged: once per reason per minute, and at most
/// [`REASONS_PER_WINDOW`] different reasons a minute.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Different reasons logged per source and minute; a client cannot choose many (most come from
/// rustls), but a certificate's contents can show in one, so they are bounded too.
const REASONS_PER_WINDOW: usize = 5;
/// Sources remembered at once; beyond them refusals are counted in the metrics but not logged
/// until old sources are forgotten (a flood from many addresses must not flood the log).
const SOURCES: usize = 4096;

/// Which refused connections get a log line. Idle or garbage connections are cheap to open:
/// without a bound, 500 idle sockets wrote 2,000 warnings in 30 s. Per source address, the first
/// refusal with a given reason in a minute is logged, with how many refusals of that source were
/// not logged since its last line (`suppressed`); the rest are only counted in the metrics.
/// Different reasons from one source (a client trying several certificates) each still get
/// their line, up to [`REASONS_PER_WINDOW`] a minute.
#[derive(Debug, Default)]
struct RefusalLog {
    sources: std::sync::Mutex<HashMap<std::net::IpAddr, RefusalSource>>,
}

#[derive(Debug)]
struct RefusalSource {
    window_started: std::time::Instant,
    /// The reasons logged in this window (their kind and text).
    logged: Vec<(RefusalKind, String)>,
    /// Refusals not logged since this source's last line.
    suppressed: u64,
}

impl RefusalLog {
    /// Notes a refusal of `remote` at `now`: `Some(suppressed)` if it is to be logged (with the
    /// number of this source's refusals not logged since its last line), `None` if not.
    fn note(
        &self,
        remote: SocketAddr,
        kind: RefusalKind,
        reason: &str,
        now: std::time::Instant,
    ) -> Option<u64> {
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ip = remote.ip();
        if !sources.contains_key(&ip) && sources.len() >= SOURCES {
            sources.retain(|_, s| now.duration_since(s.window_started) < REFUSAL_WINDOW);
            if sources.len() >= SOURCES {
                return None;
            }
        }
        let source = sources.entry(ip).or_insert_with(|| RefusalSource {
            window_started: now,
            logged: Vec::new(),
            suppressed: 0,
        });
        if now.duration_since(source.window_started) >= REFUSAL_WINDOW {
            source.window_started = now;
            source.logged.clear();
        }
        // Bounded: a reason text could carry a long certificate field.
        let reason: String = reason.chars().take(200).collect();
        let seen = source
            .logged
            .iter()
            .any(|(k, r)| *k == kind && *r == reason);
        if seen || source.logged.len() >= REASONS_PER_WINDOW {
            source.suppressed += 1;
            return None;
        }
        source.logged.push((kind, reason));
        Some(std::mem::take(&mut source.suppressed))
    }
}

/// Client TLS towards one node: trust only that node's CA, expect its node id as the server
/// name, and present `identity`.
pub fn client_tls(
    node_id: &str,
    node_ca_pem: &str,
    identity: &CertifiedKey,
) -> tonic::transport::ClientTlsConfig {
    install_crypto_provider();
    tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(node_ca_pem))
        .identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ))
        .domain_name(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_source_reason_and_minute() {
        let log = RefusalLog::default();
        let start = std::time::Instant::now();
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let a_again: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:4000".parse().unwrap();
        let garbage = |at: SocketAddr, seconds: u64| {
            log.note(
                at,
                RefusalKind::Protocol,
                "received corrupt message",
                start + Duration::from_secs(seconds),
            )
        };
        assert_eq!(garbage(a, 0), Some(0), "the first is logged");
        for second in 1..50 {
            assert_eq!(garbage(a_again, second), None, "the same source, any port");
        }
        assert_eq!(garbage(b, 1), Some(0), "another source has its own line");
        // Another reason from the same source still gets its line, and carries the count.
        assert_eq!(
            log.note(
                a,
                RefusalKind::Timeout,
                "timed out",
                start + Duration::from_secs(50)
            ),
            Some(49)
        );
        // A minute later the first reason is logged again, with the refusals since.
        assert_eq!(garbage(a, 59), None);
        assert_eq!(garbage(a, 61), Some(1));
        // Many reasons from one source: at most a few lines a minute.
        let lines = (0..100)
            .filter(|i| {
                log.note(
                    b,
                    RefusalKind::Certificate,
                    &format!("client certificate refused: '{i}' is not a role"),
                    start + Duration::from_secs(2),
                )
                .is_some()
            })
            .count();
        assert_eq!(lines, REASONS_PER_WINDOW - 1, "b logged one reason before");
    }
}
