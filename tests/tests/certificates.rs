//! The certificate matrix against a real `schein-node` process: no client certificate, a
//! certificate from a CA in no roster, an expired one, one from another member's CA claiming to
//! be this node's office, one with a role schein does not know, one with a role not allowed to
//! make the call, and a provider of another node calling this one. Each is refused — at the
//! handshake or at the call, with a reason — and each refusal shows in the node's log, where
//! its operator looks. The node keeps serving the genuine office afterwards.
//!
//! `access.rs` covers the same ground in-process; this file adds the two cases it lacks (no
//! certificate at all, another node's provider) and the operator's view.

use std::time::Duration;

use schein_node::client::IdentityFile;
use schein_node::pki::{CertifiedKey, NodeCa, Role, Validity};
use schein_proto::error::reason_of;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    ErrorReason, IssueVoucherRequest, ListVouchersRequest, VerifyVoucherRequest,
    VoucherStatusRequest,
};
use schein_tests::process::{NodeProcess, ProcessFederation};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const LOG_WAIT: Duration = Duration::from_secs(10);

fn with_cert(template: &IdentityFile, cert: CertifiedKey) -> IdentityFile {
    IdentityFile {
        certificate: cert.cert_pem,
        private_key: cert.key_pem,
        ..template.clone()
    }
}

/// A channel to `node` that trusts its CA but presents no client certificate.
async fn anonymous_channel(node: &NodeProcess) -> Result<Channel, tonic::transport::Error> {
    schein_node::tls::install_crypto_provider();
    let ca = std::fs::read_to_string(node.dir.join("keys/ca.pem"))
        .expect("the node's CA and endpoint are usable");
    Endpoint::from_shared(node.endpoint())
        .expect("the node's CA and endpoint are usable")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(node.id.clone()),
        )
        .expect("the node's CA and endpoint are usable")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// Lists vouchers at the office service with `channel`.
async fn list(channel: Channel) -> Result<(), tonic::Status> {
    OfficeClient::new(channel)
        .list_vouchers(ListVouchersRequest::default())
        .await
        .map(|_| ())
}

/// Lists vouchers with `identity`; the first call is where a refused handshake shows under
/// TLS 1.3, as a transport error rather than an answer of the service.
async fn list_as(identity: &IdentityFile) -> Result<(), tonic::Status> {
    match identity.connect(None).await {
        Ok(channel) => list(channel).await,
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    }
}

/// Asserts that `attempt` ends in a refused handshake (no reason from the service), and that
/// the node logged a refused handshake with `reason` in it meanwhile.
async fn assert_refused_at_handshake(
    node: &NodeProcess,
    what: &str,
    attempt: impl Future<Output = Result<(), tonic::Status>>,
    reason: &str,
) {
    // The reason picks this attempt's lines: a client's channel may still be retrying an
    // earlier case in the background.
    let needles = ["tls handshake refused", reason];
    let before = node.log_lines(&needles).len();
    let status = attempt.await.expect_err(what);
    assert_eq!(reason_of(&status), None, "{what}: {status:?}");
    assert_ne!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    let lines = node
        .wait_for_log(before, &needles, LOG_WAIT)
        .await
        .expect("the node logs the refusal");
    eprintln!(
        "{what}: refused at the handshake; logged: {}",
        lines[before]
    );
}

/// Asserts that `outcome` is a refusal by the service with `reason`, and that the node logged
/// `log` (with the caller's identity).
async fn assert_refused_at_call(
    node: &NodeProcess,
    what: &str,
    outcome: Result<(), tonic::Status>,
    reason: ErrorReason,
    log: &str,
    caller: &str,
) {
    let status = outcome.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert_eq!(reason_of(&status), Some(reason), "{what}: {status:?}");
    assert!(!status.message().is_empty(), "{what}: a sentence says why");
    let lines = node
        .wait_for_log(0, &[log, caller], LOG_WAIT)
        .await
        .expect("the node logs the refusal");
    eprintln!(
        "{what}: refused with {reason:?} ({}); logged: {}",
        status.message(),
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_certificate_is_refused_and_logged() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    // Only Leipzig runs: Dresden is a member whose certificates Leipzig trusts for Dresden.
    federation.start_one("leipzig").await.unwrap();
    let leipzig = federation.node("leipzig");
    let dresden = federation.node("dresden");
    let office = leipzig.office().unwrap();
    let mut genuine = OfficeClient::new(office.connect(None).await.unwrap());
    let voucher = genuine
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap()
        .into_inner();

    // No client certificate at all.
    let anonymous = async {
        match anonymous_channel(leipzig).await {
            Ok(channel) => list(channel).await,
            Err(error) => Err(tonic::Status::unavailable(error.to_string())),
        }
    };
    assert_refused_at_handshake(
        leipzig,
        "no client certificate",
        anonymous,
        "no client certificate presented",
    )
    .await;

    // A CA in no roster, calling itself leipzig.
    let (rogue, _) = NodeCa::generate("leipzig").unwrap();
    let rogue_office = rogue
        .issue_client_cert(Role::Office, "office", Validity::days_from_now(30))
        .unwrap();
    assert_refused_at_handshake(
        leipzig,
        "foreign CA",
        list_as(&with_cert(&office, rogue_office)),
        "client certificate refused: BadSignature",
    )
    .await;

    // Leipzig's own CA, expired yesterday.
    let expired = leipzig
        .ca()
        .unwrap()
        .issue_client_cert(
            Role::Office,
            "office",
            Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            },
        )
        .unwrap();
    assert_refused_at_handshake(
        leipzig,
        "expired certificate",
        list_as(&with_cert(&office, expired)),
        "client certificate refused: certificate expired",
    )
    .await;

    // Dresden's genuine CA signing a certificate that claims to be Leipzig's office.
    let impersonation = dresden
        .ca()
        .unwrap()
        .issue_raw(
            "schein://leipzig/office/office",
            Validity::days_from_now(30),
        )
        .unwrap();
    assert_refused_at_handshake(
        leipzig,
        "another member's CA impersonating this node's office",
        list_as(&with_cert(&office, impersonation)),
        "client certificate refused: UnknownIssuer",
    )
    .await;

    // Leipzig's CA, but a role schein does not know.
    let janitor = leipzig
        .ca()
        .unwrap()
        .issue_raw(
            "schein://leipzig/janitor/office",
            Validity::days_from_now(30),
        )
        .unwrap();
    assert_refused_at_handshake(
        leipzig,
        "unknown role",
        list_as(&with_cert(&office, janitor)),
        "'janitor' is not a role",
    )
    .await;

    // Genuine certificates with the wrong role for the call.
    let provider = leipzig.enroll(Role::Provider, "praxis").unwrap();
    let outcome = OfficeClient::new(provider.connect(None).await.unwrap())
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .map(|_| ());
    assert_refused_at_call(
        leipzig,
        "a provider issuing vouchers",
        outcome,
        ErrorReason::WrongRole,
        "refused: wrong role",
        "caller=provider 'praxis' of leipzig",
    )
    .await;
    let funder = leipzig.enroll(Role::Funder, "land").unwrap();
    let outcome = FederationClient::new(funder.connect(None).await.unwrap())
        .voucher_status(VoucherStatusRequest {
            serial: vec![0; 10],
        })
        .await
        .map(|_| ());
    assert_refused_at_call(
        leipzig,
        "a funder calling the federation service",
        outcome,
        ErrorReason::WrongRole,
        "refused: federation call by a non-node",
        "caller=funder 'land' of leipzig",
    )
    .await;

    // A provider of Dresden verifying through Leipzig instead of its own node.
    let dresden_provider = dresden.enroll(Role::Provider, "praxis-dd").unwrap();
    let at_leipzig = IdentityFile {
        node: office.node.clone(),
        endpoint: office.endpoint.clone(),
        node_ca: office.node_ca.clone(),
        ..dresden_provider
    };
    let outcome = ProviderClient::new(at_leipzig.connect(None).await.unwrap())
        .verify_voucher(VerifyVoucherRequest {
            code: voucher.short_code.clone(),
            for_scope: 0,
        })
        .await
        .map(|_| ());
    assert_refused_at_call(
        leipzig,
        "another node's provider",
        outcome,
        ErrorReason::WrongNode,
        "refused: caller of another node",
        "caller=provider 'praxis-dd' of dresden",
    )
    .await;

    // Bare TCP probes (a load balancer's health check) are no warning: a hundred of them leave
    // the count of warnings as it was.
    let warnings = leipzig.log_lines(&["WARN"]).len();
    for _ in 0..100 {
        let probe = tokio::net::TcpStream::connect(("127.0.0.1", leipzig.port))
            .await
            .unwrap();
        drop(probe);
    }
    // A genuine call after them: every probe was accepted and closed before it is answered.
    OfficeClient::new(office.connect(None).await.unwrap())
        .list_vouchers(ListVouchersRequest::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        leipzig.log_lines(&["WARN"]).len(),
        warnings,
        "probes logged warnings: {}",
        leipzig.log_tail(5)
    );

    // Still serving the genuine office, with nothing changed by any of it.
    let leipzig = federation.node_mut("leipzig");
    leipzig.assert_alive().unwrap();
    let listed = OfficeClient::new(office.connect(None).await.unwrap())
        .list_vouchers(ListVouchersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.vouchers.len(), 1);
    assert_eq!(listed.vouchers[0].claimed_cents, 0);
    let refused = leipzig.log_lines(&["refused"]).len();
    println!(
        "certificate matrix: 8 wrong certificates refused; {refused} refusal lines in the log (clients retry refused handshakes)"
    );
    leipzig.kill().unwrap();
}
