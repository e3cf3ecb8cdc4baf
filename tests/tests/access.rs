//! Who may connect and who may do what: certificates from outside the roster, impersonation
//! across members, unknown roles, and the role and node checks of every service.

use schein_node::client::IdentityFile;
use schein_node::pki::{NodeCa, Role, Validity};
use schein_proto::error::reason_of;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    ErrorReason, IssueVoucherRequest, ListVouchersRequest, RevocationReason, RevokeVoucherRequest,
    VerifyVoucherRequest, VoucherStatusRequest,
};
use schein_tests::{Saxony, connect, issue};
use tonic::Code;

/// `template` with its certificate and key replaced.
fn with_cert(template: &IdentityFile, cert: schein_node::pki::CertifiedKey) -> IdentityFile {
    IdentityFile {
        certificate: cert.cert_pem,
        private_key: cert.key_pem,
        ..template.clone()
    }
}

/// Calls Leipzig's office service with `identity`; the first RPC is where a refused handshake
/// shows under TLS 1.3.
async fn list_at_leipzig(identity: &IdentityFile) -> Result<(), tonic::Status> {
    let channel = match identity.connect(None).await {
        Ok(channel) => channel,
        Err(error) => return Err(tonic::Status::unavailable(error.to_string())),
    };
    OfficeClient::new(channel)
        .list_vouchers(ListVouchersRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn certificates_outside_the_roster_or_impersonating_are_refused() {
    let saxony = Saxony::start().await.unwrap();
    let office = saxony.federation.office("leipzig").unwrap();
    assert!(
        list_at_leipzig(&office).await.is_ok(),
        "the genuine office is served"
    );

    // A CA that is in no roster, even one calling itself leipzig.
    let (rogue, _) = NodeCa::generate("leipzig").unwrap();
    let rogue_office = rogue
        .issue_client_cert(Role::Office, "office", Validity::days_from_now(30))
        .unwrap();
    // Dresden's genuine CA signing a certificate that claims to be Leipzig's office.
    let dresden_ca_key = std::fs::read_to_string(
        saxony
            .federation
            .node("dresden")
            .unwrap()
            .dir
            .join("keys/ca.key"),
    )
    .unwrap();
    let dresden_ca_pem = std::fs::read_to_string(
        saxony
            .federation
            .node("dresden")
            .unwrap()
            .dir
            .join("keys/ca.pem"),
    )
    .unwrap();
    let dresden_ca = NodeCa::load("dresden", &dresden_ca_pem, &dresden_ca_key).unwrap();
    let impersonation = dresden_ca
        .issue_raw(
            "schein://leipzig/office/office",
            Validity::days_from_now(30),
        )
        .unwrap();
    // Leipzig's own CA, but a role schein does not know, or no identity at all.
    let leipzig_dir = saxony.federation.node("leipzig").unwrap().dir.clone();
    let leipzig_ca = NodeCa::load(
        "leipzig",
        &std::fs::read_to_string(leipzig_dir.join("keys/ca.pem")).unwrap(),
        &std::fs::read_to_string(leipzig_dir.join("keys/ca.key")).unwrap(),
    )
    .unwrap();
    let janitor = leipzig_ca
        .issue_raw(
            "schein://leipzig/janitor/office",
            Validity::days_from_now(30),
        )
        .unwrap();
    let not_schein = leipzig_ca
        .issue_raw("https://example.org/office", Validity::days_from_now(30))
        .unwrap();
    let expired = leipzig_ca
        .issue_client_cert(
            Role::Office,
            "office",
            Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            },
        )
        .unwrap();

    for (what, cert) in [
        ("foreign CA", rogue_office),
        ("impersonation by another member's CA", impersonation),
        ("unknown role", janitor),
        ("no schein identity", not_schein),
        ("expired", expired),
    ] {
        let status = list_at_leipzig(&with_cert(&office, cert))
            .await
            .unwrap_err();
        // Refused at the handshake: a dropped connection, not an answer of the service.
        assert_eq!(reason_of(&status), None, "{what}: {status:?}");
        assert!(
            std::error::Error::source(&status).is_some(),
            "{what}: not a transport failure: {status:?}"
        );
    }
    assert!(
        list_at_leipzig(&office).await.is_ok(),
        "the node keeps serving"
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_service_checks_role_and_node() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig_office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut leipzig_office, &[]).await.unwrap();

    let leipzig_provider = saxony
        .federation
        .enroll("leipzig", Role::Provider, "praxis")
        .unwrap();
    let leipzig_funder = saxony
        .federation
        .enroll("leipzig", Role::Funder, "land")
        .unwrap();
    let dresden_office = saxony.federation.office("dresden").unwrap();
    let dresden_provider = saxony
        .federation
        .enroll("dresden", Role::Provider, "praxis")
        .unwrap();

    // A provider cannot issue; a funder cannot issue or verify.
    for identity in [&leipzig_provider, &leipzig_funder] {
        let status = OfficeClient::new(connect(identity).await.unwrap())
            .issue_voucher(IssueVoucherRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
    }
    let verify = VerifyVoucherRequest {
        code: voucher.short_code.clone(),
        for_scope: 0,
    };
    for identity in [
        &leipzig_funder,
        &saxony.federation.office("leipzig").unwrap(),
    ] {
        let status = ProviderClient::new(connect(identity).await.unwrap())
            .verify_voucher(verify.clone())
            .await
            .unwrap_err();
        assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
    }

    // Dresden's office cannot revoke Leipzig's voucher: not at Leipzig's node (wrong node) and
    // not at its own (not issued there).
    let revoke = RevokeVoucherRequest {
        code: voucher.short_code.clone(),
        reason: RevocationReason::Lost as i32,
    };
    let at_leipzig = saxony.aimed_at(dresden_office.clone(), "leipzig").unwrap();
    let status = OfficeClient::new(connect(&at_leipzig).await.unwrap())
        .revoke_voucher(revoke.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongNode));
    let status = OfficeClient::new(connect(&dresden_office).await.unwrap())
        .revoke_voucher(revoke.clone())
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::NotIssuedHere));

    // A Dresden provider verifies through Dresden, not through Leipzig.
    let dresden_provider_at_leipzig = IdentityFile {
        endpoint: at_leipzig.endpoint.clone(),
        node: "leipzig".into(),
        node_ca: at_leipzig.node_ca.clone(),
        ..dresden_provider.clone()
    };
    let status = ProviderClient::new(connect(&dresden_provider_at_leipzig).await.unwrap())
        .verify_voucher(verify.clone())
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongNode));

    // Only nodes call the federation service.
    let status = FederationClient::new(connect(&leipzig_provider).await.unwrap())
        .voucher_status(VoucherStatusRequest {
            serial: vec![0; 10],
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));

    // The voucher is untouched by all of this.
    let status = schein_tests::verify(
        &mut saxony.provider("chemnitz", "praxis").await.unwrap(),
        &voucher.short_code,
    )
    .await
    .unwrap();
    assert_eq!(status.verdict(), schein_proto::v1::Verdict::Valid);
    saxony.shutdown().await.unwrap();
}
