//! Trust that can be taken back, with real `schein-node` processes and real certificates.
//! Leipzig and Dresden run; Leipzig's operator revokes a provider's identity (a lost practice
//! laptop) with `schein-node identity revoke`: the provider's next call on a connection opened
//! before is refused, and so is its next handshake. A TLS client that really tries to resume
//! its session gets a full handshake every time (the nodes keep no sessions), so a resumed
//! session cannot outlive the identity; an expired certificate is refused at the handshake. A
//! funder enrolled at Leipzig reads Dresden's report until Leipzig revokes it; Dresden refuses
//! it within a minute, without anyone touching Dresden. A provider whose certificate expires
//! soon is warned by every command and renews it with `schein identity renew`: a new key and
//! certificate, and the old certificate refused from then on.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use schein_node::client::IdentityFile;
use schein_node::pki::{Role, Validity};
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{ReportRequest, Scope, VerifyVoucherRequest};
use schein_tests::process::{NodeProcess, ProcessFederation, node_binary, schein, text};
use tokio_rustls::TlsConnector;

/// `schein-node identity revoke HANDLE` at `node`, as its operator runs it.
fn revoke(node: &NodeProcess, handle: &str) {
    let output = Command::new(node_binary().expect("set up"))
        .current_dir(&node.dir)
        .env_remove("SCHEIN_NODE_CONFIG")
        .args(["identity", "revoke", handle])
        .output()
        .expect("set up");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("revoked 1 certificate"));
}

async fn verify(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    ProviderClient::new(channel)
        .verify_voucher(VerifyVoucherRequest {
            code: "LEJ-0000-0000-0000-0000-0".into(),
            for_scope: Scope::Unspecified as i32,
        })
        .await
        .map(drop)
}

/// A plain TLS client of `identity`'s node that keeps sessions and offers them again, as
/// `openssl s_client -sess_out/-sess_in` does: the kind of each handshake it made.
struct ResumingClient {
    connector: TlsConnector,
    addr: String,
    server: ServerName<'static>,
}

impl ResumingClient {
    fn new(identity: &IdentityFile, addr: String) -> Self {
        schein_node::tls::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(identity.node_ca.as_bytes()).expect("set up"))
            .expect("set up");
        let certs =
            vec![CertificateDer::from_pem_slice(identity.certificate.as_bytes()).expect("set up")];
        let key = PrivateKeyDer::from_pem_slice(identity.private_key.as_bytes()).expect("set up");
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("set up");
        // Resumption on, with room for many sessions: whatever the server offers is kept.
        config.resumption = rustls::client::Resumption::in_memory_sessions(64);
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
            server: ServerName::try_from(identity.node.clone()).expect("set up"),
        }
    }

    /// Connects, reads whatever the server sends first (session tickets come then), and
    /// returns how the handshake went.
    async fn handshake(&self) -> Option<rustls::HandshakeKind> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("set up");
        let mut tls = self
            .connector
            .connect(self.server.clone(), tcp)
            .await
            .ok()?;
        let kind = tls.get_ref().1.handshake_kind();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A client preface, so that a server sending tickets after the handshake does so.
        let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await;
        kind
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_identities_are_refused_on_open_connections_at_handshakes_and_by_peers() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let leipzig = federation.node("leipzig");
    let laptop = leipzig.enroll(Role::Provider, "laptop").unwrap();
    let funder = leipzig.enroll(Role::Funder, "land").unwrap();

    // Sessions are never resumed: every connection shows its certificate.
    let client = ResumingClient::new(&laptop, format!("127.0.0.1:{}", leipzig.port));
    for _ in 0..3 {
        assert_eq!(
            client.handshake().await,
            Some(rustls::HandshakeKind::Full),
            "a resumed session would skip the certificate check"
        );
    }

    // The laptop works, on a connection that stays open.
    let open = laptop.connect(None).await.unwrap();
    verify(open.clone()).await.unwrap();

    // A funder of Leipzig reads Dresden's report.
    let dresden = federation.node("dresden").office().unwrap();
    let funder_at_dresden = IdentityFile {
        node: dresden.node,
        endpoint: dresden.endpoint,
        node_ca: dresden.node_ca,
        ..funder.clone()
    };
    let at_dresden = funder_at_dresden.connect(None).await.unwrap();
    let report = || async {
        ReportsClient::new(at_dresden.clone())
            .report(ReportRequest {
                period: "2026".into(),
            })
            .await
    };
    report().await.unwrap();

    // The laptop is lost: revoked at once, also on the open connection.
    revoke(leipzig, "laptop");
    let started = Instant::now();
    let refused = loop {
        match verify(open.clone()).await {
            Err(status) => break status,
            Ok(()) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(()) => panic!("still served 10 s after the revocation"),
        }
    };
    println!(
        "revoked provider refused on its open connection after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at once: {:?}",
        started.elapsed()
    );
    assert!(refused.message().contains("revoked"), "{refused:?}");

    // Its next handshake fails (under TLS 1.3 the client learns it at its first read).
    let fresh = laptop.connect(None).await;
    let refused_again = match fresh {
        Err(error) => error.to_string(),
        Ok(channel) => verify(channel).await.expect_err("refused").to_string(),
    };
    println!("next handshake: {refused_again}");
    // The node names the reason in its log (written as the handshake ends: wait for it).
    leipzig
        .wait_for_log(
            0,
            &["tls handshake refused", "was revoked"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // An expired certificate of the same CA: refused at the handshake.
    let ca = leipzig.ca().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired_cert = ca
        .issue_client_cert(
            Role::Provider,
            "old-laptop",
            Validity {
                not_before: now - time::Duration::days(30),
                not_after: now - time::Duration::days(1),
            },
        )
        .unwrap();
    let expired = IdentityFile {
        name: "old-laptop".into(),
        certificate: expired_cert.cert_pem,
        private_key: expired_cert.key_pem,
        ..laptop.clone()
    };
    let expired_client = ResumingClient::new(&expired, format!("127.0.0.1:{}", leipzig.port));
    let _ = expired_client.handshake().await;
    let call = match expired.connect(None).await {
        Err(error) => Err(error.to_string()),
        Ok(channel) => verify(channel).await.map_err(|s| s.to_string()),
    };
    assert!(call.is_err(), "an expired certificate is refused");

    // A certificate that expires while its connection is open: served before, refused after.
    let short_cert = ca
        .issue_client_cert(
            Role::Provider,
            "short-lived",
            Validity {
                not_before: now - time::Duration::hours(1),
                not_after: time::OffsetDateTime::now_utc() + time::Duration::seconds(8),
            },
        )
        .unwrap();
    let short = IdentityFile {
        name: "short-lived".into(),
        certificate: short_cert.cert_pem,
        private_key: short_cert.key_pem,
        ..laptop.clone()
    };
    let short_channel = short.connect(None).await.unwrap();
    verify(short_channel.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let expired_on_open = verify(short_channel).await.expect_err("expired");
    assert!(
        expired_on_open.message().contains("expired"),
        "{expired_on_open:?}"
    );

    // The funder, revoked at Leipzig: Dresden refuses it within a minute, by itself.
    revoke(leipzig, "funder/land");
    let started = Instant::now();
    let refused = loop {
        match report().await {
            Err(status) => break status,
            Ok(_) if started.elapsed() < Duration::from_secs(70) => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Ok(_) => panic!("Dresden still served the revoked funder after 70 s"),
        }
    };
    println!(
        "Dresden refused Leipzig's revoked funder after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(61));
    assert!(refused.message().contains("revoked"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_its_own_certificate_and_the_old_one_is_refused() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let leipzig = federation.node("leipzig");
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("leipzig-praxis-neu.toml");
    // Ten days left: every command warns.
    let old = schein_node::init::enroll(
        &leipzig.config().unwrap(),
        Role::Provider,
        "praxis-neu",
        10,
        &path,
    )
    .unwrap();
    let (status, _) = schein(&old, files.path(), &["status"]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let warning = text(&status.stderr);
    assert!(
        warning.contains("your certificate expires on")
            && warning.contains("schein identity renew"),
        "{warning}"
    );
    let old_channel = old.connect(None).await.unwrap();
    verify(old_channel.clone()).await.unwrap();

    let (renewed, _) = schein(&old, files.path(), &["identity", "renew"]).await;
    assert!(renewed.status.success(), "{}", text(&renewed.stderr));
    assert!(text(&renewed.stdout).contains("the old certificate is revoked"));

    let new = IdentityFile::load(&path).unwrap();
    assert_ne!(new.certificate, old.certificate);
    assert_ne!(
        new.private_key, old.private_key,
        "a new key, made by the holder"
    );
    let days_left = (new.not_after().unwrap() - schein_node::node::unix_now()) / 86_400;
    assert!((88..=90).contains(&days_left), "{days_left} days");
    verify(new.connect(None).await.unwrap()).await.unwrap();
    let (status, _) = schein(&new, files.path(), &["status"]).await;
    assert!(
        !text(&status.stderr).contains("expires"),
        "no warning any more"
    );

    // The old certificate: refused on its open connection and at a new one.
    let started = Instant::now();
    while verify(old_channel.clone()).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the old certificate still served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = match old.connect(None).await {
        Err(_) => true,
        Ok(channel) => verify(channel).await.is_err(),
    };
    assert!(again, "the old certificate is refused at a new handshake");
    let register = std::fs::read_to_string(leipzig.dir.join("enrolled.toml")).unwrap();
    assert_eq!(
        register.matches("name = \"praxis-neu\"").count(),
        2,
        "{register}"
    );
    assert_eq!(register.matches("revoked_on").count(), 1, "{register}");
}
