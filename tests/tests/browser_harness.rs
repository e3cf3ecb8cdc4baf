//! The browser harness proves itself against a tiny HTTPS server in this test that demands a
//! client certificate from a test CA: `tests/browser/harness_smoke.mjs` opens its page with a
//! client certificate in real headless Chromium, reads the subject the server saw, decodes the
//! page's QR code from a screenshot and runs axe; without the certificate the server refuses
//! the handshake, which the server's own record of failed handshakes confirms; and at a name
//! the server's certificate does not carry, Playwright's proxy refuses the server, so the
//! server's certificate is really checked (against the test CA in `NODE_EXTRA_CA_CERTS`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maud::{DOCTYPE, Markup, html};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use schein_tests::browser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// What the QR code on the page says; the script must read it back from pixels.
const QR_TEXT: &str = "SCHEIN-HARNESS-7Q2X-K9MD-4TFA";
/// The client's common name, with a non-ASCII letter to see it survive certificate and page.
const CLIENT_NAME: &str = "Praxis Dr. Weiß";
/// The server's only DNS name besides 127.0.0.1; `localhost` is deliberately not one.
const SERVER_NAME: &str = "harness.schein.test";

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    server_pem: String,
    server_key: String,
}

impl Pki {
    fn new() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "schein browser harness CA");
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_pem = server.signed_by(&server_key, &issuer)?.pem();

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::default();
        client
            .distinguished_name
            .push(DnType::CommonName, CLIENT_NAME);
        client
            .distinguished_name
            .push(DnType::OrganizationName, "schein harness");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_pem = client.signed_by(&client_key, &issuer)?.pem();

        let dir = tempfile::tempdir()?;
        for (name, pem) in [
            ("ca.pem", &ca_pem),
            ("server.pem", &server_pem),
            ("client.pem", &client_pem),
            ("client.key", &client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), pem)?;
        }
        Ok(Self {
            dir,
            ca_pem,
            server_pem,
            server_key: server_key.serialize_pem(),
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Server TLS that requires a client certificate from the test CA; no resumption, so every
    /// connection shows its certificate anew.
    fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes())?],
                PrivateKeyDer::from_pem_slice(self.server_key.as_bytes())?,
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }
}

/// What the server saw: subjects of accepted clients, errors of refused handshakes.
#[derive(Default)]
struct Seen {
    subjects: Vec<String>,
    refused: Vec<String>,
}

/// Serves `/` (the page) and `/qr.svg` until the test ends, one request per connection.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, seen: Arc<Mutex<Seen>>) {
    let qr_svg = qrcode::QrCode::new(QR_TEXT.as_bytes())
        .expect("QR code")
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build();
    let qr_svg = Arc::new(qr_svg);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, seen, qr_svg) = (acceptor.clone(), seen.clone(), qr_svg.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    seen.lock().expect("seen").refused.push(e.to_string());
                    return;
                }
            };
            let subject = {
                let certs = tls.get_ref().1.peer_certificates().expect("client auth");
                let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).expect("x509");
                cert.subject().to_string()
            };
            seen.lock().expect("seen").subjects.push(subject.clone());
            let mut stream = BufReader::new(tls);
            // A browser may open a connection ahead and never use it: not forever.
            let Ok(Some(request_line)) = timeout(Duration::from_secs(10), head(&mut stream)).await
            else {
                return;
            };
            let path = request_line.split(' ').nth(1).unwrap_or("");
            let (status, content_type, body) = match path {
                "/" => ("200 OK", "text/html; charset=utf-8", page(&subject).0),
                "/qr.svg" => ("200 OK", "image/svg+xml", qr_svg.to_string()),
                _ => ("404 Not Found", "text/plain", "not found".to_owned()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 content-security-policy: default-src 'none'; img-src 'self'\r\n\
                 connection: close\r\n\r\n",
                body.len()
            );
            let stream = stream.get_mut();
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The request line of an HTTP/1.1 request; the rest of the head is read and dropped.
async fn head(stream: &mut (impl AsyncBufReadExt + Unpin)) -> Option<String> {
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await.ok()?;
    let mut line = String::new();
    while stream.read_line(&mut line).await.ok()? > 2 {
        line.clear();
    }
    Some(request_line)
}

/// The page a signed-in client sees: who the server took it for, and the QR code.
fn page(subject: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "schein browser harness" }
            }
            body {
                main {
                    h1 { "Signed in with a client certificate" }
                    p { "Certificate subject: " span #subject { (subject) } }
                    img #qr src="/qr.svg" width="240" height="240"
                        alt="QR code of the harness test text";
                }
            }
        }
    }
}

#[tokio::test]
async fn chromium_presents_a_client_certificate_and_reads_the_page() {
    let pki = Pki::new().expect("test PKI");
    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config().expect("server TLS")));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = tokio::spawn(serve(listener, acceptor, seen.clone()));

    let started = Instant::now();
    let out = browser::run_script(
        Path::new("harness_smoke.mjs"),
        &[
            ("SCHEIN_ORIGIN", origin.clone()),
            ("SCHEIN_CLIENT_CERT", pki.path("client.pem")),
            ("SCHEIN_CLIENT_KEY", pki.path("client.key")),
            ("SCHEIN_EXPECT_NAME", CLIENT_NAME.to_owned()),
            ("SCHEIN_SERVER_CERT", pki.path("server.pem")),
            ("NODE_EXTRA_CA_CERTS", pki.path("ca.pem")),
        ],
    )
    .await
    .expect("harness_smoke.mjs");
    eprintln!("harness_smoke.mjs took {:?}: {out}", started.elapsed());
    server.abort();

    let expected_subject = format!("CN={CLIENT_NAME}, O=schein harness");
    assert_eq!(out["subject"], expected_subject.as_str());
    assert_eq!(
        out["qr"], QR_TEXT,
        "the QR code read back from the screenshot"
    );
    assert_eq!(out["violations"], 0, "axe: {}", out["violation_ids"]);

    let seen = seen.lock().expect("seen");
    eprintln!("the server refused: {:?}", seen.refused);
    assert!(
        seen.subjects.iter().all(|s| *s == expected_subject) && !seen.subjects.is_empty(),
        "the server saw {:?}",
        seen.subjects
    );
    // Without a certificate the page did not open, and not because the browser distrusted the
    // server: the server refused a handshake that came without a client certificate.
    let without = out["without_certificate"].as_str().unwrap_or("");
    assert!(
        without.starts_with("net::ERR_"),
        "without a certificate: {without}"
    );
    assert!(
        seen.refused.iter().any(|e| e.contains("no certificate")),
        "the server refused only {:?}",
        seen.refused
    );
    // At a name the server's certificate does not carry, the proxy that presents the client
    // certificate refuses the server: it really checks it against NODE_EXTRA_CA_CERTS.
    let wrong_name = out["wrong_name"].as_str().unwrap_or("");
    assert!(
        out["wrong_name_status"] == 503 && wrong_name.contains("does not match"),
        "at localhost: {} {wrong_name}",
        out["wrong_name_status"]
    );
}
