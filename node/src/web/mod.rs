//! The web console: the node's third door, for people at a browser. It serves HTML pages over
//! HTTPS on its own listener (`web_listen`), signs people in with the client certificate their
//! browser presents (the same identities and the same role table as the gRPC services), and
//! calls the same domain operations. Pages are rendered on the server and work without
//! JavaScript; the one script only adds (live check of a typed code, the camera).
//!
//! Security: every page carries a strict Content-Security-Policy (no inline script or style,
//! nothing from elsewhere, no framing), `Cache-Control: no-store` (practice PCs are shared) and
//! `nosniff`. A browser sends its client certificate on cross-site requests too, so every form
//! that changes something carries a token bound to the signed-in certificate and the node's
//! run, and a request whose `Origin` or `Sec-Fetch-Site` says it came from elsewhere is refused.

// A page is the refusal: handlers return `Result<_, Response>` (axum's way), once per request.
#![allow(clippy::result_large_err)]

mod assets;
pub mod card;
mod funder;
mod help;
pub mod holder_text;
mod office;
mod page;
mod practice;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sha2::Digest;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::domain::access::{self, AccessError, Operation};
use crate::node::Node;
use crate::pki::{Identity, Role};
use crate::tls::{RosterClientVerifier, Visitor, WEB_HANDSHAKE_TIMEOUT};

pub use page::Lang;

/// Most connections open at once; more wait in the kernel's backlog or are closed.
const MAX_CONNECTIONS: usize = 512;
/// Most requests in flight on one HTTP/2 connection.
const MAX_STREAMS: u32 = 32;
/// How long a client may take to send a request's headers, and to answer a keep-alive ping.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct Console {
    node: Arc<Node>,
    /// Random per run: form tokens are derived from it, so a page from before a restart
    /// asks to be loaded again instead of acting.
    secret: Arc<[u8; 32]>,
    /// Opaque page addresses for vouchers, so that no code lands in a browser's history.
    handles: Arc<Handles>,
}

/// Short-lived random names for voucher codes, used in the office's page addresses: a shared
/// PC's browser history then holds no serial with the minute it was issued or looked at (the
/// node itself keeps only days).
#[derive(Debug, Default)]
pub(crate) struct Handles {
    names: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

impl Handles {
    /// How long a handle names its code.
    const LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
    /// Most handles kept; the oldest go first.
    const MOST: usize = 10_000;

    /// A new handle for `code`.
    pub(crate) fn name(&self, code: &str) -> String {
        let handle = data_encoding::BASE32_NOPAD.encode(&rand::random::<[u8; 10]>());
        let now = std::time::Instant::now();
        let mut names = match self.names.lock() {
            Ok(names) => names,
            Err(poisoned) => poisoned.into_inner(),
        };
        names.retain(|_, (_, made)| now.duration_since(*made) < Self::LIFETIME);
        if names.len() >= Self::MOST
            && let Some(oldest) = names
                .iter()
                .min_by_key(|(_, (_, made))| *made)
                .map(|(k, _)| k.clone())
        {
            names.remove(&oldest);
        }
        names.insert(handle.clone(), (code.to_owned(), now));
        handle
    }

    /// The code `handle` names, while it lives.
    pub(crate) fn code(&self, handle: &str) -> Option<String> {
        let names = match self.names.lock() {
            Ok(names) => names,
            Err(poisoned) => poisoned.into_inner(),
        };
        names
            .get(handle)
            .filter(|(_, made)| made.elapsed() < Self::LIFETIME)
            .map(|(code, _)| code.clone())
    }
}

/// Serves the console on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    tls: Arc<rustls::ServerConfig>,
    verifier: Arc<RosterClientVerifier>,
    mut stop: watch::Receiver<bool>,
) {
    let console = Console {
        node,
        secret: Arc::new(rand::random()),
        handles: Arc::default(),
    };
    let app = router(console);
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Anyone may open a connection (the help page needs no certificate): bound how many, and how
    // long one may idle, so that the console cannot take the node's file descriptors away.
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(HEADER_TIMEOUT)
        .keep_alive_timeout(HEADER_TIMEOUT);
    let http = Arc::new(http);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accepting a web connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if *stop.borrow() {
            break;
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "web connection refused: too many open");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let http = http.clone();
        let acceptor = acceptor.clone();
        let verifier = verifier.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(WEB_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "web handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "web handshake timed out");
                        return;
                    }
                };
            let visitor = verifier.caller_of(stream.get_ref().1.peer_certificates(), Some(remote));
            if let Visitor::Refused(reason) = &visitor {
                tracing::info!(%remote, %reason, "web visitor with a certificate this node does not accept");
            }
            let service = hyper::service::service_fn(move |mut request: Request<_>| {
                request.extensions_mut().insert(visitor.clone());
                app.clone().oneshot(request.map(axum::body::Body::new))
            });
            let connection = http
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, %error, "web connection ended");
            }
            drop(permit);
        });
    }
    // Let the requests in progress finish, for a while.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(home))
        .merge(practice::routes())
        .merge(office::routes())
        .merge(funder::routes())
        .merge(help::routes())
        .merge(assets::routes())
        .fallback(not_found)
        .layer(middleware::from_fn(isolate))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// Where a signed-in person starts.
async fn home(visitor: Signed) -> Response {
    match visitor.identity.role {
        Role::Office => Redirect::to("/office").into_response(),
        Role::Provider => Redirect::to("/practice").into_response(),
        Role::Funder => Redirect::to("/funder").into_response(),
        Role::Node => help::not_for_you(
            visitor.lang,
            "Node certificates are for nodes, not for people.",
        ),
    }
}

async fn not_found(lang: Lang) -> Response {
    page::message(
        lang,
        StatusCode::NOT_FOUND,
        lang.t("Seite nicht gefunden", "Page not found"),
        lang.t(
            "Diese Seite gibt es nicht. Zurück zur Startseite.",
            "There is no such page. Back to the start page.",
        ),
    )
}

/// Resource isolation by Fetch Metadata: a request that another site makes the browser send
/// (with the client certificate, which browsers attach to any request to this origin) is
/// refused unless it is a plain navigation to a page, so that another site's forms, images and
/// scripts can make the node neither change nor compute anything. Browsers that send no
/// `Sec-Fetch-*` headers pass here; the form token still guards every change.
async fn isolate(request: Request, next: Next) -> Response {
    if let Some(lang) = cross_site(&request) {
        tracing::warn!(
            path = request.uri().path(),
            "cross-site request to the console refused"
        );
        return forgery_refused(lang);
    }
    next.run(request).await
}

/// The language to refuse `request` in, if another site made the browser send it and it is
/// not a plain navigation to a page.
fn cross_site(request: &Request) -> Option<Lang> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let navigation = request.method() == axum::http::Method::GET
        && header("sec-fetch-mode") == "navigate"
        && matches!(header("sec-fetch-dest"), "document" | "");
    (header("sec-fetch-site") == "cross-site" && !navigation)
        .then(|| Lang::from_headers(request.headers()))
}

fn forgery_refused(lang: Lang) -> Response {
    page::message(
        lang,
        StatusCode::FORBIDDEN,
        lang.t("Nicht ausgeführt", "Not done"),
        lang.t(
            "Diese Anfrage kam nicht aus einem Formular dieser Seite (oder die Seite ist veraltet). Nichts wurde geändert. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
            "This request did not come from a form of this console (or the page was out of date). Nothing was changed. Please reload the page and try again.",
        ),
    )
}

/// The headers every answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not "no-referrer": with it a browser sends `Origin: null` on its own forms, which the
    // forgery check then refuses. "same-origin" still gives other sites nothing.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// A signed-in person: the identity their certificate names, accepted by the roster.
#[derive(Clone, Debug)]
pub(crate) struct Signed {
    pub identity: Identity,
    pub caller: crate::tls::Caller,
    pub lang: Lang,
    /// The request did not come from another site: its `Origin` (when sent) is this console,
    /// and the browser does not call it cross-site.
    same_site: bool,
}

impl Signed {
    /// The identity if the role table admits it to `operation`, else the page that says why.
    pub(crate) fn may(
        &self,
        console: &Console,
        operation: Operation,
    ) -> Result<Identity, Response> {
        access::authorize(Some(&self.caller), &console.node, operation)
            .map_err(|error| refused(self.lang, &error))
    }

    /// For a form that changes something: the identity if the role table admits it to
    /// `operation` and the form is this console's own ([`check_forgery`]).
    pub(crate) fn may_change(
        &self,
        console: &Console,
        operation: Operation,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<Identity, Response> {
        let identity = self.may(console, operation)?;
        check_forgery(self, console, form.get("csrf").map(String::as_str))?;
        Ok(identity)
    }

    /// The token every state-changing form of this person carries.
    pub(crate) fn form_token(&self, console: &Console) -> String {
        let mut hash = sha2::Sha256::new();
        hash.update(console.secret.as_slice());
        hash.update(self.identity.to_string().as_bytes());
        hash.update(self.caller.ca_fingerprint);
        data_encoding::HEXLOWER.encode(&hash.finalize()[..16])
    }
}

fn refused(lang: Lang, error: &AccessError) -> Response {
    match error {
        AccessError::NoIdentity => help::no_certificate(lang, None),
        AccessError::CaNotTrusted | AccessError::Revoked | AccessError::Expired(_) => {
            help::no_certificate(lang, Some(&error.to_string()))
        }
        AccessError::WrongRole(reason) | AccessError::WrongNode(reason) => {
            help::not_for_you(lang, reason)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        match parts.extensions.get::<Visitor>() {
            Some(Visitor::Known(caller)) if caller.identity.role == Role::Node => Err(
                help::not_for_you(lang, "Node certificates are for nodes, not for people."),
            ),
            Some(Visitor::Known(caller)) => Ok(Signed {
                identity: caller.identity.clone(),
                caller: caller.clone(),
                lang,
                same_site: same_site(parts),
            }),
            Some(Visitor::Refused(reason)) => Err(help::no_certificate(lang, Some(reason))),
            _ => Err(help::no_certificate(lang, None)),
        }
    }
}

/// Whether a request came from this console's own pages: its `Origin`, when the browser sends
/// one, names this console (the host as HTTP/2's authority or HTTP/1.1's `Host` header gives
/// it), and `Sec-Fetch-Site`, when sent, does not say another site.
fn same_site(parts: &Parts) -> bool {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let origin_ok = match parts.headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(origin)) => host.is_some_and(|host| origin == format!("https://{host}")),
        Some(Err(_)) => false,
    };
    let site_ok = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|s| s.to_str().ok())
        .is_none_or(|site| site == "same-origin" || site == "none");
    origin_ok && site_ok
}

/// A state-changing request that passed the checks against forgery from another site: it came
/// from this console ([`same_site`]) and carries the signed-in person's form token.
pub(crate) fn check_forgery(
    signed: &Signed,
    console: &Console,
    token: Option<&str>,
) -> Result<(), Response> {
    let token_ok = token.is_some_and(|t| t == signed.form_token(console));
    if signed.same_site && token_ok {
        return Ok(());
    }
    tracing::warn!(caller = %signed.identity, same_site = signed.same_site, token_ok, "web form refused as a possible forgery");
    Err(forgery_refused(signed.lang))
}

/// The address the console listens on, for the log line and the demo.
pub fn describe(addr: SocketAddr) -> String {
    format!("https://{addr}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("a request").into_parts().0
    }

    #[test]
    fn a_form_counts_as_this_consoles_only_with_its_own_origin() {
        // HTTP/2: the host is the request's authority.
        let h2 = "https://localhost:8443/office/issue";
        assert!(same_site(&parts(h2, &[])), "old browsers send no Origin");
        assert!(same_site(&parts(
            h2,
            &[("origin", "https://localhost:8443")]
        )));
        assert!(!same_site(&parts(
            h2,
            &[("origin", "https://evil.example")]
        )));
        assert!(!same_site(&parts(h2, &[("origin", "null")])));
        assert!(!same_site(&parts(
            h2,
            &[("origin", "https://localhost:8444")]
        )));
        // HTTP/1.1: the host is the Host header.
        let h1 = "/office/issue";
        let host = ("host", "localhost:8443");
        assert!(same_site(&parts(
            h1,
            &[host, ("origin", "https://localhost:8443")]
        )));
        assert!(!same_site(&parts(
            h1,
            &[host, ("origin", "https://evil.example")]
        )));
        assert!(
            !same_site(&parts(h1, &[("origin", "https://localhost:8443")])),
            "no host to compare with"
        );
        // Fetch metadata.
        assert!(same_site(&parts(h2, &[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&parts(h2, &[("sec-fetch-site", "cross-site")])));
        assert!(
            !same_site(&parts(h2, &[("sec-fetch-site", "same-site")])),
            "a sibling subdomain is another site here"
        );
    }

    #[test]
    fn handles_name_codes_for_a_while_and_nothing_else() {
        let handles = Handles::default();
        let one = handles.name("LEJ-7KQ4-M2XD-9FTR-WB3H-Q");
        let two = handles.name("LEJ-7KQ4-M2XD-9FTR-WB3H-Q");
        assert_ne!(one, two, "a fresh handle each time");
        assert!(!one.contains("7KQ4"));
        assert_eq!(
            handles.code(&one).as_deref(),
            Some("LEJ-7KQ4-M2XD-9FTR-WB3H-Q")
        );
        assert_eq!(handles.code("NOTAHANDLE"), None);
    }
}
