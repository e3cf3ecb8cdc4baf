//! One node whose services are called in-process, without a listener or TLS: each request gets
//! the caller's identity as the TLS acceptor would attach it. The request fuzz target and the
//! request proptest drive the real handlers through it with messages decoded from arbitrary
//! bytes, so that both exercise what a client on the network can reach *behind* the transport.
//!
//! What it skips: TLS and certificate checks, the server's size limits and its decoding layer
//! ([`crate::wire`]), and the network between members (it is alone in its roster). Tests that
//! claim to test the wire use real nodes on loopback (`tests/`), never this.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use schein_proto::v1;
use schein_proto::v1::federation_server::Federation;
use schein_proto::v1::identities_server::Identities;
use schein_proto::v1::office_server::Office;
use schein_proto::v1::provider_server::Provider;
use schein_proto::v1::reports_server::Reports;
use tonic::{Request, Status};

use super::LocalError;
use crate::config::{CONFIG_FILE, Config};
use crate::domain::access::Operation;
use crate::init::{InitOptions, SetupError, init};
use crate::node::Node;
use crate::pki::{Identity, Role};
use crate::service::{
    FederationService, IdentitiesService, OfficeService, ProviderService, ReportsService,
};
use crate::store::Store;
use crate::tls::Caller;

/// Every RPC a node serves: the operations of the role table, in its fixed order.
pub type Rpc = Operation;

/// A node alone in its roster, with its four services and a caller of each role.
///
/// Alone, because then no request can make it wait for another member: everything a handler
/// does happens here. Two vouchers are issued when it is created; a request whose voucher code
/// is `#0` … `#3` gets the full (even) or short (odd) code of one of them instead, so that
/// arbitrary input also reaches the paths behind a genuine code.
#[derive(Debug)]
pub struct DirectNode {
    pub node: Arc<Node>,
    office: OfficeService,
    provider: ProviderService,
    federation: FederationService,
    reports: ReportsService,
    identities: IdentitiesService,
    ca_fingerprint: [u8; 32],
    voucher_codes: Vec<String>,
}

/// Node id of a [`DirectNode`].
pub const DIRECT_NODE_ID: &str = "leipzig";

impl DirectNode {
    /// Creates the node in `dir` (which must not hold one yet) and opens its store.
    pub async fn create(dir: &Path) -> Result<Self, LocalError> {
        crate::tls::install_crypto_provider();
        init(&InitOptions {
            dir: dir.to_path_buf(),
            node_id: DIRECT_NODE_ID.into(),
            name: "Leipzig".into(),
            prefix: "LEJ".into(),
            listen: "127.0.0.1:0".into(),
            // Never dialled: the node is the only member, and it answers itself in-process.
            endpoint: "https://127.0.0.1:9".into(),
            web_listen: None,
            hostnames: vec![],
            office_name: "office".into(),
        })?;
        let config = Config::load_with_env(&dir.join(CONFIG_FILE), []).map_err(SetupError::from)?;
        let store = Store::open(&config.data_dir).map_err(|source| {
            LocalError::Run(crate::server::RunError::Store {
                path: config.data_dir.clone(),
                source,
            })
        })?;
        let ca_fingerprint = config
            .roster
            .member(DIRECT_NODE_ID)
            .map(|me| me.ca_fingerprint)
            .ok_or_else(|| LocalError::NoSuchNode(DIRECT_NODE_ID.into()))?;
        let revocations = crate::revocation::Revocations::load(config.node_id(), &config.base_dir)
            .map_err(SetupError::from)?;
        let node = Arc::new(Node::new(&config, store, revocations));
        let mut direct = Self {
            office: OfficeService::new(node.clone()),
            provider: ProviderService::new(node.clone()),
            federation: FederationService::new(node.clone()),
            reports: ReportsService::new(node.clone()),
            identities: IdentitiesService::new(node.clone()),
            node,
            ca_fingerprint,
            voucher_codes: Vec::new(),
        };
        for _ in 0..2 {
            let request = direct.request(Role::Office, v1::IssueVoucherRequest::default());
            let record = direct
                .office
                .issue_voucher(request)
                .await
                .map_err(|status| {
                    LocalError::Setup(SetupError::Invalid(format!(
                        "cannot issue a voucher: {}",
                        status.message()
                    )))
                })?
                .into_inner();
            direct.voucher_codes.push(record.full_code);
            direct.voucher_codes.push(record.short_code);
        }
        Ok(direct)
    }

    /// `message` as a request from this node's identity with `role`, as it arrives through TLS.
    pub fn request<T>(&self, role: Role, message: T) -> Request<T> {
        let name = match role {
            Role::Node => DIRECT_NODE_ID,
            Role::Office => "office",
            Role::Provider => "praxis",
            Role::Funder => "funder",
        };
        let mut request = Request::new(message);
        request.extensions_mut().insert(Caller {
            identity: Identity {
                node: DIRECT_NODE_ID.into(),
                role,
                name: name.into(),
            },
            remote: None,
            ca_fingerprint: self.ca_fingerprint,
            fingerprint: [0; 32],
            not_after: i64::MAX,
        });
        request
    }

    /// Fetches the node's whole ledger through its office handler and checks the hash chain
    /// and the signed head, as `schein ledger verify` does.
    pub async fn checked_ledger(&self) -> Result<schein_proto::ledger::CheckedLedger, String> {
        let mut entries = Vec::new();
        loop {
            let request = v1::LedgerRequest {
                from_seq: entries.len() as u64 + 1,
                limit: 1000,
            };
            let page = self
                .office
                .ledger(self.request(Role::Office, request))
                .await
                .map_err(|status| format!("the ledger cannot be read: {status:?}"))?
                .into_inner();
            if page.entries.is_empty() {
                return schein_proto::ledger::verify_chain(
                    &entries,
                    &page.signed_head,
                    &page.signing_keys,
                )
                .map_err(|error| format!("the ledger does not check out: {error}"));
            }
            entries.extend(page.entries);
        }
    }

    /// Replaces `#0` … `#3` with the code of a voucher issued at creation.
    fn substitute(&self, code: &mut String) {
        let index = code.strip_prefix('#').and_then(|n| n.parse::<usize>().ok());
        if let Some(genuine) = index.and_then(|i| self.voucher_codes.get(i)) {
            *code = genuine.clone();
        }
    }

    /// Decodes `encoded` as `rpc`'s request message and hands it to the handler, as the server
    /// would after reading it off the wire. The outer error is a message that does not decode
    /// (the server refuses it before any handler runs); the inner result is the handler's.
    pub async fn call(
        &self,
        rpc: Rpc,
        encoded: &[u8],
    ) -> Result<Result<(), Status>, prost::DecodeError> {
        let role = rpc.caller_role();
        macro_rules! handle {
            ($service:ident . $method:ident, $message:ty) => {{
                let message = <$message>::decode(encoded)?;
                let answer = self.$service.$method(self.request(role, message)).await;
                answer.map(drop)
            }};
            ($service:ident . $method:ident, $message:ty, code) => {{
                let mut message = <$message>::decode(encoded)?;
                self.substitute(&mut message.code);
                let answer = self.$service.$method(self.request(role, message)).await;
                answer.map(drop)
            }};
        }
        Ok(match rpc {
            Rpc::IssueVoucher => handle!(office.issue_voucher, v1::IssueVoucherRequest),
            Rpc::RevokeVoucher => handle!(office.revoke_voucher, v1::RevokeVoucherRequest, code),
            Rpc::ShowVoucher => handle!(office.show_voucher, v1::ShowVoucherRequest, code),
            Rpc::ListVouchers => handle!(office.list_vouchers, v1::ListVouchersRequest),
            Rpc::ApproveCap => handle!(office.approve_cap, v1::ApproveCapRequest, code),
            Rpc::ListHeldClaims => handle!(office.list_held_claims, v1::ListClaimsRequest),
            Rpc::DecideHeldClaim => {
                handle!(office.decide_held_claim, v1::DecideHeldClaimRequest)
            }
            Rpc::Ledger => handle!(office.ledger, v1::LedgerRequest),
            Rpc::PeerLedger => handle!(office.peer_ledger, v1::PeerLedgerRequest),
            Rpc::CloseClearing => handle!(office.close_clearing, v1::ClearingRequest),
            Rpc::ShowClearing => handle!(office.show_clearing, v1::ClearingRequest),
            Rpc::VerifyVoucher => {
                handle!(provider.verify_voucher, v1::VerifyVoucherRequest, code)
            }
            Rpc::VerifyVouchers => {
                let mut message = v1::VerifyVouchersRequest::decode(encoded)?;
                for voucher in &mut message.vouchers {
                    self.substitute(&mut voucher.code);
                }
                let answer = self
                    .provider
                    .verify_vouchers(self.request(role, message))
                    .await;
                answer.map(drop)
            }
            Rpc::SubmitClaim => handle!(provider.submit_claim, v1::SubmitClaimRequest, code),
            Rpc::ClaimStatus => handle!(provider.claim_status, v1::ClaimStatusRequest),
            Rpc::ListClaims => handle!(provider.list_claims, v1::ListClaimsRequest),
            Rpc::VoucherStatus => handle!(federation.voucher_status, v1::VoucherStatusRequest),
            Rpc::VoucherStatuses => {
                handle!(federation.voucher_statuses, v1::VoucherStatusesRequest)
            }
            Rpc::MemberEntry => handle!(federation.member_entry, v1::MemberEntryRequest),
            Rpc::Settle => handle!(federation.settle, v1::SettleRequest),
            Rpc::SettleBatch => handle!(federation.settle_batch, v1::SettleBatchRequest),
            Rpc::Statement => handle!(federation.statement, v1::StatementRequest),
            Rpc::ClosePeriod => handle!(federation.close_period, v1::ClosePeriodRequest),
            Rpc::ProviderKnown => handle!(federation.provider_known, v1::ProviderKnownRequest),
            Rpc::LedgerProof => handle!(federation.ledger_proof, v1::LedgerProofRequest),
            Rpc::RosterSince => handle!(federation.roster_since, v1::RosterSinceRequest),
            Rpc::RevokedIdentities => {
                handle!(federation.revoked_identities, v1::RevokedIdentitiesRequest)
            }
            Rpc::Report => handle!(reports.report, v1::ReportRequest),
            Rpc::RenewIdentity => handle!(identities.renew, v1::RenewRequest),
            Rpc::Members => handle!(reports.members, v1::MembersRequest),
        })
    }
}
