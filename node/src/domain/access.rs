//! Who may do what (DESIGN.md, "Identities and trust"): one table of every operation a node
//! offers and the callers it admits, used by every door — the gRPC services, the web console and
//! the in-process test node. Only this node's office issues and revokes, only this node's
//! providers verify and claim through it, only member nodes call the federation service,
//! funders and nodes of any member and this node's office read reports. Every call also checks that the
//! CA which vouched for the caller at the handshake is still the one the roster trusts.

use schein_proto::v1::ErrorReason;

use crate::node::Node;
use crate::pki::{Identity, Role};
use crate::tls::Caller;

/// Every operation of a node, in a fixed order (a fuzzer's byte selects one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    IssueVoucher,
    RevokeVoucher,
    ShowVoucher,
    ListVouchers,
    ApproveCap,
    ListHeldClaims,
    DecideHeldClaim,
    Ledger,
    PeerLedger,
    CloseClearing,
    ShowClearing,
    VerifyVoucher,
    VerifyVouchers,
    SubmitClaim,
    ClaimStatus,
    ListClaims,
    VoucherStatus,
    VoucherStatuses,
    MemberEntry,
    Settle,
    SettleBatch,
    Statement,
    ClosePeriod,
    ProviderKnown,
    LedgerProof,
    RevokedIdentities,
    RosterSince,
    RenewIdentity,
    Report,
    Members,
}

/// Who an operation admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admits {
    /// Holders of this role at this node.
    Local(Role),
    /// Funders and nodes of any member (nodes read what funders read, for their consoles'
    /// federation view), and this node's office.
    Readers,
    /// Member nodes.
    Peers,
    /// Office staff, providers and funders of this node, each for itself.
    Holders,
}

impl Operation {
    pub const ALL: [Operation; 30] = [
        Operation::IssueVoucher,
        Operation::RevokeVoucher,
        Operation::ShowVoucher,
        Operation::ListVouchers,
        Operation::ApproveCap,
        Operation::ListHeldClaims,
        Operation::DecideHeldClaim,
        Operation::Ledger,
        Operation::PeerLedger,
        Operation::CloseClearing,
        Operation::ShowClearing,
        Operation::VerifyVoucher,
        Operation::VerifyVouchers,
        Operation::SubmitClaim,
        Operation::ClaimStatus,
        Operation::ListClaims,
        Operation::VoucherStatus,
        Operation::VoucherStatuses,
        Operation::MemberEntry,
        Operation::Settle,
        Operation::SettleBatch,
        Operation::Statement,
        Operation::ClosePeriod,
        Operation::ProviderKnown,
        Operation::LedgerProof,
        Operation::RevokedIdentities,
        Operation::RosterSince,
        Operation::RenewIdentity,
        Operation::Report,
        Operation::Members,
    ];

    /// The operation a selector byte names; every byte names one.
    pub fn from_selector(selector: u8) -> Self {
        Self::ALL[usize::from(selector) % Self::ALL.len()]
    }

    /// The table.
    pub const fn admits(self) -> Admits {
        use Operation::*;
        match self {
            IssueVoucher | RevokeVoucher | ShowVoucher | ListVouchers | ApproveCap
            | ListHeldClaims | DecideHeldClaim | Ledger | PeerLedger | CloseClearing
            | ShowClearing => Admits::Local(Role::Office),
            VerifyVoucher | VerifyVouchers | SubmitClaim | ClaimStatus | ListClaims => {
                Admits::Local(Role::Provider)
            }
            VoucherStatus | VoucherStatuses | MemberEntry | Settle | SettleBatch | Statement
            | ClosePeriod | ProviderKnown | LedgerProof | RevokedIdentities | RosterSince => {
                Admits::Peers
            }
            Report | Members => Admits::Readers,
            RenewIdentity => Admits::Holders,
        }
    }

    /// What the operation does, in words for a refusal ("a provider certificate cannot …").
    pub const fn action(self) -> &'static str {
        use Operation::*;
        match self {
            IssueVoucher => "issue vouchers",
            RevokeVoucher => "revoke vouchers",
            ShowVoucher => "look at vouchers",
            ListVouchers => "list vouchers",
            ApproveCap => "approve caps",
            ListHeldClaims => "look at held claims",
            DecideHeldClaim => "decide on held claims",
            Ledger => "read the ledger",
            PeerLedger => "check other members' ledgers",
            CloseClearing => "close a period",
            ShowClearing => "look at clearing",
            VerifyVoucher | VerifyVouchers => "verify vouchers",
            SubmitClaim => "submit claims",
            ClaimStatus => "look at claims",
            ListClaims => "list claims",
            VoucherStatus | VoucherStatuses => "ask about vouchers as a member node",
            MemberEntry => "read member entries",
            Settle | SettleBatch => "settle claims",
            Statement | ClosePeriod => "clear periods",
            ProviderKnown => "ask about providers",
            LedgerProof => "witness ledgers",
            RevokedIdentities => "read revocation lists",
            RosterSince => "read roster versions",
            RenewIdentity => "renew certificates",
            Report | Members => "read reports",
        }
    }

    /// A role the table admits: what the in-process test node calls with.
    pub const fn caller_role(self) -> Role {
        match self.admits() {
            Admits::Local(role) => role,
            Admits::Readers => Role::Funder,
            Admits::Peers => Role::Node,
            Admits::Holders => Role::Provider,
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no client certificate was presented")]
    NoIdentity,
    #[error("the authority that issued your certificate is no longer trusted by this node")]
    CaNotTrusted,
    #[error("your certificate was revoked; ask your clearing office for a new one")]
    Revoked,
    #[error("your certificate expired on {0}; ask your clearing office for a new one")]
    Expired(String),
    #[error("{0}")]
    WrongRole(String),
    #[error("{0}")]
    WrongNode(String),
}

impl AccessError {
    pub fn reason(&self) -> ErrorReason {
        match self {
            AccessError::NoIdentity
            | AccessError::CaNotTrusted
            | AccessError::Revoked
            | AccessError::Expired(_) => ErrorReason::UnknownIdentity,
            AccessError::WrongRole(_) => ErrorReason::WrongRole,
            AccessError::WrongNode(_) => ErrorReason::WrongNode,
        }
    }
}

fn a_or_an(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The caller's identity, if the table admits it to `operation` at `node`. `caller` is what
/// the TLS handshake established; `None` if the request did not come through it.
pub fn authorize(
    caller: Option<&Caller>,
    node: &Node,
    operation: Operation,
) -> Result<Identity, AccessError> {
    let caller = caller.ok_or(AccessError::NoIdentity)?;
    let identity = &caller.identity;
    let still_trusted = node
        .roster()
        .member(&identity.node)
        .is_some_and(|m| m.ca_fingerprint == caller.ca_fingerprint);
    if !still_trusted {
        tracing::warn!(caller = %identity, "refused: its CA left the roster");
        return Err(AccessError::CaNotTrusted);
    }
    if caller.not_after < crate::node::unix_now() {
        tracing::warn!(caller = %identity, "refused: its certificate expired on an open connection");
        return Err(AccessError::Expired(
            schein_proto::Day::of_unix_seconds(caller.not_after).to_string(),
        ));
    }
    if node.revocations.is_revoked(identity, &caller.fingerprint) {
        tracing::warn!(caller = %identity, "refused: its certificate was revoked");
        return Err(AccessError::Revoked);
    }
    match operation.admits() {
        Admits::Local(role) => {
            if identity.role != role {
                tracing::warn!(caller = %identity, action = operation.action(), "refused: wrong role");
                let held = identity.role.as_str();
                return Err(AccessError::WrongRole(format!(
                    "{} {held} certificate cannot {}; only {} may",
                    a_or_an(held),
                    operation.action(),
                    role.holders()
                )));
            }
            if identity.node != node.id {
                tracing::warn!(caller = %identity, action = operation.action(), "refused: caller of another node");
                return Err(AccessError::WrongNode(format!(
                    "this is the node of {}; your certificate belongs to {}. Use your own city's node",
                    node.name, identity.node
                )));
            }
        }
        Admits::Readers => {
            // Member nodes read what funders read: a node's console shows its funders and
            // office the whole federation's reports, asked for with the node's certificate.
            let reader = identity.role == Role::Funder
                || identity.role == Role::Node
                || (identity.role == Role::Office && identity.node == node.id);
            if !reader {
                tracing::warn!(caller = %identity, "refused: report read by a non-reader");
                return Err(AccessError::WrongRole(
                    "reports are for funders, member nodes and this node's clearing office".into(),
                ));
            }
        }
        Admits::Holders => {
            if identity.role == Role::Node || identity.node != node.id {
                tracing::warn!(caller = %identity, "refused: renewal by a node or another node's holder");
                return Err(AccessError::WrongNode(format!(
                    "renew your certificate at the node that issued it ({})",
                    identity.node
                )));
            }
        }
        Admits::Peers => {
            if identity.role != Role::Node {
                tracing::warn!(caller = %identity, "refused: federation call by a non-node");
                return Err(AccessError::WrongRole(
                    "only member nodes may call the federation service".into(),
                ));
            }
        }
    }
    Ok(identity.clone())
}
