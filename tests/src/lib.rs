//! Test harness: a real federation of nodes in one process, on loopback ports bound before the
//! nodes are made, with certificates and keys created at test time in a temporary directory,
//! and clients that connect over real mutual TLS; and, for the hard-failure tests, nodes as
//! real `schein-node` processes ([`process`]), a proxy that can blackhole a route ([`proxy`]),
//! and an outside check of two nodes' books ([`books`]).

pub mod books;
pub mod browser;
pub mod process;
pub mod proxy;
pub mod raw;

use std::sync::Once;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use schein_node::client::IdentityFile;
use schein_node::local::{LocalFederation, SAXONY};
use schein_node::pki::Role;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    IssueVoucherRequest, Scope, Verdict, Verification, VerifyVoucherRequest, VoucherRecord,
};
use tonic::transport::Channel;

/// Whether the long variants of the hard-failure tests run (`SCHEIN_LONG_TESTS=1`).
pub fn long_tests() -> bool {
    std::env::var("SCHEIN_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// The GOÄ codes of the built-in fee schedule with their most per unit. One row of all nine
/// costs EUR 69.93, so seven rows (seven service days) stay under the default EUR 500 cap.
pub const FEE_CODES: [(&str, i64); 9] = [
    ("GOAE-1", 466),
    ("GOAE-3", 874),
    ("GOAE-5", 466),
    ("GOAE-7", 933),
    ("GOAE-8", 1515),
    ("GOAE-250", 233),
    ("GOAE-410", 933),
    ("GOAE-651", 1282),
    ("GOAE-3511", 291),
];

/// Logs of the nodes go to the test's captured output; `RUST_LOG` adjusts them.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Leipzig, Dresden and Chemnitz, running, in a temporary directory removed on drop.
#[derive(Debug)]
pub struct Saxony {
    pub federation: LocalFederation,
    // Dropped last: the nodes' files live here.
    pub dir: tempfile::TempDir,
}

/// How long a node of the in-process test federations waits for another. Generous, so that
/// "settled at once" does not depend on the load of the machine (many federations run at once
/// on two cores); a node that is stopped refuses connections at once, so tests of unreachable
/// issuers do not wait for it.
pub const TEST_PEER_TIMEOUT_MS: &str = "30000";

impl Saxony {
    pub async fn start() -> anyhow::Result<Self> {
        init_tracing();
        let dir = tempfile::tempdir()?;
        let federation = LocalFederation::start_with(
            dir.path(),
            &SAXONY,
            &[("peer_timeout_ms", TEST_PEER_TIMEOUT_MS)],
        )
        .await?;
        Ok(Self { federation, dir })
    }

    /// An office client of node `id` (the identity `init` made).
    pub async fn office(&self, id: &str) -> anyhow::Result<OfficeClient<Channel>> {
        Ok(OfficeClient::new(
            connect(&self.federation.office(id)?).await?,
        ))
    }

    /// A newly enrolled provider of node `id`.
    pub async fn provider(&self, id: &str, name: &str) -> anyhow::Result<ProviderClient<Channel>> {
        let identity = self.federation.enroll(id, Role::Provider, name)?;
        Ok(ProviderClient::new(connect(&identity).await?))
    }

    /// A federation client speaking to node `to` with the identity `identity`.
    pub async fn federation_client(
        &self,
        identity: &IdentityFile,
    ) -> anyhow::Result<FederationClient<Channel>> {
        Ok(FederationClient::new(connect(identity).await?))
    }

    /// `identity`, pointed at node `at` (its endpoint and CA) instead of its own.
    pub fn aimed_at(&self, identity: IdentityFile, at: &str) -> anyhow::Result<IdentityFile> {
        let target = self.federation.office(at)?;
        Ok(IdentityFile {
            node: at.to_owned(),
            endpoint: target.endpoint,
            node_ca: target.node_ca,
            ..identity
        })
    }

    /// Node `city`'s own node certificate as a client identity aimed at node `at`: what a
    /// member node presents when it calls another's federation service.
    pub fn node_identity(&self, city: &str, at: &str) -> anyhow::Result<IdentityFile> {
        let dir = &self.federation.node(city)?.dir;
        let identity = IdentityFile {
            role: Role::Node,
            name: city.to_owned(),
            certificate: std::fs::read_to_string(dir.join("keys/node.pem"))?,
            private_key: std::fs::read_to_string(dir.join("keys/node.key"))?,
            ..self.federation.office(city)?
        };
        self.aimed_at(identity, at)
    }

    /// Node `id`'s voucher signing key, read from its key file.
    pub fn signing_key(&self, id: &str) -> anyhow::Result<SigningKey> {
        let path = self.federation.node(id)?.dir.join("keys/signing.key");
        Ok(schein_node::config::read_signing_key(&path)?)
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.federation.shutdown().await?;
        Ok(())
    }
}

/// Connects with `identity` to the node it names.
pub async fn connect(identity: &IdentityFile) -> anyhow::Result<Channel> {
    identity.connect(None).await.context("connect")
}

/// Issues a voucher at `office` with default validity and cap, plus `scope`.
pub async fn issue(
    office: &mut OfficeClient<Channel>,
    scope: &[Scope],
) -> anyhow::Result<VoucherRecord> {
    let request = IssueVoucherRequest {
        scope: scope.iter().map(|&s| s as i32).collect(),
        ..Default::default()
    };
    Ok(office.issue_voucher(request).await?.into_inner())
}

/// Verifies `code` through `provider`.
pub async fn verify(
    provider: &mut ProviderClient<Channel>,
    code: &str,
) -> anyhow::Result<Verification> {
    let request = VerifyVoucherRequest {
        code: code.to_owned(),
        for_scope: Scope::Unspecified as i32,
    };
    Ok(provider.verify_voucher(request).await?.into_inner())
}

/// A claim for `items` (fee code, count, cents) on the voucher `code`, served today.
pub fn claim_request(
    claim_id: &str,
    code: &str,
    items: &[(&str, u32, i64)],
    category: schein_proto::v1::Category,
) -> schein_proto::v1::SubmitClaimRequest {
    schein_proto::v1::SubmitClaimRequest {
        claim_id: claim_id.to_owned(),
        code: code.to_owned(),
        service_date: Some(schein_proto::Day::today().into()),
        provider_kind: schein_proto::v1::ProviderKind::Practice as i32,
        items: items
            .iter()
            .map(
                |&(fee_code, count, amount_cents)| schein_proto::v1::ClaimItem {
                    fee_code: fee_code.to_owned(),
                    count,
                    amount_cents,
                },
            )
            .collect(),
        category: category as i32,
    }
}

/// Asserts a verdict and, for invalid ones, the reason.
#[track_caller]
pub fn assert_verdict(
    verification: &Verification,
    verdict: Verdict,
    reason: schein_proto::v1::InvalidReason,
) {
    assert_eq!(
        (verification.verdict(), verification.reason()),
        (verdict, reason),
        "message: {}",
        verification.message
    );
    assert!(
        !verification.message.is_empty(),
        "every answer carries a sentence"
    );
}
