//! A client identity renewing itself before it expires, without a visit to the operator: the
//! holder makes a new key, sends its public half, and gets a certificate for the same role and
//! name signed by this node's CA. The certificate it presented is revoked at once, so a copy of
//! the old one (a laptop's backup) is worth nothing afterwards.

use schein_proto::Day;
use schein_proto::v1::{ErrorReason, RenewRequest, RenewResponse};

use super::Refusal;
use crate::enrolled::{self, Enrolled};
use crate::node::Node;
use crate::pki::{Identity, NodeCa, Role, Validity};

/// Days a renewed certificate is valid when the holder names none: short, since renewing is
/// cheap and a lost certificate is then worth little for long.
pub const DEFAULT_DAYS: u32 = 90;
/// Most days a renewed certificate may be valid: a holder cannot lengthen its own leash (a
/// longer certificate is the operator's decision, at `enroll`).
pub const MOST_DAYS: u32 = DEFAULT_DAYS;

/// Why a renewal was refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("{0}")]
    Invalid(String),
    #[error("this node cannot sign certificates now: {0}")]
    Ca(String),
    #[error("the register of identities: {0}")]
    Register(#[from] enrolled::RegisterError),
}

impl Refusal for RenewError {
    fn reason(&self) -> ErrorReason {
        match self {
            RenewError::Invalid(_) => ErrorReason::InvalidArgument,
            RenewError::Ca(_) => ErrorReason::Internal,
            RenewError::Register(_) => ErrorReason::Storage,
        }
    }
}

/// A new certificate for `holder` (who presented the certificate with `presented`), for the
/// public key in `request`; the presented certificate is revoked.
pub fn renew(
    node: &Node,
    holder: &Identity,
    presented: &[u8; 32],
    request: &RenewRequest,
) -> Result<RenewResponse, RenewError> {
    if holder.role == Role::Node {
        return Err(RenewError::Invalid(
            "node certificates are renewed by the operator".into(),
        ));
    }
    let days = match request.days {
        0 => DEFAULT_DAYS,
        n if n <= MOST_DAYS => n,
        n => {
            return Err(RenewError::Invalid(format!(
                "a certificate may be valid for at most {MOST_DAYS} days, not {n}"
            )));
        }
    };
    let ca_key = std::fs::read_to_string(&node.ca_key_path)
        .map_err(|e| RenewError::Ca(format!("{}: {e}", node.ca_key_path.display())))?;
    let ca = NodeCa::load(&node.id, &node.ca_cert_pem, &ca_key)
        .map_err(|e| RenewError::Ca(e.to_string()))?;
    let validity = Validity::days_from_now(days);
    let valid_until = Day::from_date(validity.not_after.date());
    let certificate_pem = ca
        .renew_client_cert(holder.role, &holder.name, validity, &request.public_key)
        .map_err(|e| RenewError::Invalid(e.to_string()))?;
    let renewed = Enrolled {
        role: holder.role,
        name: holder.name.clone(),
        valid_until: valid_until.to_string(),
        fingerprint: crate::pki::fingerprint_of_pem(&certificate_pem)
            .map(|f| data_encoding::HEXLOWER.encode(&f)),
        revoked_on: None,
    };
    // In one locked step: the old certificate revoked, the new one recorded — or nothing, if
    // the old one was revoked meanwhile (then the new certificate is never handed out).
    enrolled::renew(&node.base_dir, presented, renewed, Day::today()).map_err(|e| match e {
        enrolled::RenewalError::Revoked => RenewError::Invalid(
            "the certificate you presented was revoked; ask your clearing office".into(),
        ),
        enrolled::RenewalError::Register(e) => RenewError::Register(e),
    })?;
    node.revocations.refresh_own()?;
    tracing::info!(holder = %holder, %valid_until, "identity renewed; the certificate it presented is revoked");
    Ok(RenewResponse {
        certificate_pem,
        valid_until: Some(valid_until.into()),
        node_ca_pem: crate::pki::node_ca_bundle(
            &node.ca_cert_pem,
            &node.roster(),
            &node.id,
            &node.key_dir,
        ),
    })
}
