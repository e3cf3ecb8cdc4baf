//! Signed documents other than vouchers: settlement records (signed by the redeeming node),
//! receipts (signed by the issuer) and ledger heads. Same wire form as a voucher (format byte,
//! body, 64-byte ed25519 signature) and the same rule: the signature covers a context string
//! naming the kind of document, then the body bytes, so one kind can never pass for another.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;

use crate::voucher::{FORMAT_V1, VoucherError};

/// Longest body accepted for records, receipts and heads; real ones are around 100 bytes.
const MAX_BODY_LEN: usize = 1024;
/// Longest period statement: it lists every claim of a period between two nodes (about 26
/// bytes each), so it is bounded by the message size a node accepts, not by a document size.
const MAX_STATEMENT_LEN: usize = 16 * 1024 * 1024;
const SIGNATURE_LEN: usize = 64;

/// The kinds of signed documents, each with its own signing context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Settlement,
    Receipt,
    LedgerHead,
    Statement,
    Revocations,
}

impl Kind {
    const fn context(self) -> &'static [u8] {
        match self {
            Kind::Settlement => b"schein/settlement/v1",
            Kind::Receipt => b"schein/receipt/v1",
            Kind::LedgerHead => b"schein/ledger-head/v1",
            Kind::Statement => b"schein/statement/v1",
            Kind::Revocations => b"schein/revocations/v1",
        }
    }

    const fn max_body_len(self) -> usize {
        match self {
            Kind::Statement | Kind::Revocations => MAX_STATEMENT_LEN,
            _ => MAX_BODY_LEN,
        }
    }
}

fn signed_message(kind: Kind, body: &[u8]) -> Vec<u8> {
    let context = kind.context();
    let mut message = Vec::with_capacity(context.len() + body.len());
    message.extend_from_slice(context);
    message.extend_from_slice(body);
    message
}

/// A signed document that names the key that signed it, so that a verifier can pick the key.
pub trait NamesKey: Message + Default {
    /// The kind of document it is signed as.
    const KIND: Kind;
    fn key_id(&self) -> &str;
}

macro_rules! names_key {
    ($($message:ty => $kind:expr),* $(,)?) => {$(
        impl NamesKey for $message {
            const KIND: Kind = $kind;
            fn key_id(&self) -> &str {
                &self.key_id
            }
        }
    )*};
}

names_key!(
    crate::v1::SettlementRecord => Kind::Settlement,
    crate::v1::Receipt => Kind::Receipt,
    crate::v1::LedgerHead => Kind::LedgerHead,
    crate::v1::RevocationList => Kind::Revocations,
    crate::v1::PeriodStatement => Kind::Statement,
);

/// Encodes `document`, signs it as `kind` and returns the wire form.
pub fn seal<M: Message>(kind: Kind, document: &M, key: &SigningKey) -> Vec<u8> {
    let body = document.encode_to_vec();
    let signature = key.sign(&signed_message(kind, &body)).to_bytes();
    let mut bytes = Vec::with_capacity(1 + body.len() + SIGNATURE_LEN);
    bytes.push(FORMAT_V1);
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&signature);
    bytes
}

fn split(bytes: &[u8], max_body_len: usize) -> Result<(&[u8], &[u8]), VoucherError> {
    let (&format, rest) = bytes
        .split_first()
        .ok_or(VoucherError::Malformed("it is empty"))?;
    if format != FORMAT_V1 {
        return Err(VoucherError::UnknownFormat(format));
    }
    if rest.len() <= SIGNATURE_LEN || rest.len() > max_body_len + SIGNATURE_LEN {
        return Err(VoucherError::Malformed("it has the wrong length"));
    }
    Ok(rest.split_at(rest.len() - SIGNATURE_LEN))
}

/// Reads the document without checking the signature: only to find out who signed it, so that
/// the right key can be looked up. Nothing read here may be acted on; [`open`] holds each kind to
/// its own size limit.
pub fn peek<M: Message + Default>(bytes: &[u8]) -> Result<M, VoucherError> {
    let (body, _) = split(bytes, MAX_STATEMENT_LEN)?;
    M::decode(body).map_err(|_| VoucherError::Malformed("its content cannot be read"))
}

/// Checks the signature strictly with `key` as a document of `kind`, then decodes it.
pub fn open<M: Message + Default>(
    kind: Kind,
    bytes: &[u8],
    key: &VerifyingKey,
) -> Result<M, VoucherError> {
    let (body, signature) = split(bytes, kind.max_body_len())?;
    let signature: [u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| VoucherError::Malformed("the signature has the wrong length"))?;
    key.verify_strict(
        &signed_message(kind, body),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| VoucherError::BadSignature)?;
    M::decode(body).map_err(|_| VoucherError::Malformed("its content cannot be read"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::v1::{Category, Receipt, SettlementRecord};

    fn record() -> SettlementRecord {
        SettlementRecord {
            claim_id: "c0ffee".into(),
            serial: vec![7; 10],
            issuer: "leipzig".into(),
            amount_cents: 4_660,
            category: Category::Treatment as i32,
            service_month: 202_611,
            redeemer: "dresden".into(),
            key_id: "abcd".into(),
            voucher_hash: vec![1; 32],
            accepted_on: Some(crate::Day::from_days_since_epoch(20_788).into()),
            served_before_revocation: true,
        }
    }

    /// A statement lists every claim of a period, so it may be long; other documents may not.
    #[test]
    fn only_statements_may_be_long() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let long = SettlementRecord {
            claim_id: "x".repeat(20_000),
            ..record()
        };
        let statement = seal(Kind::Statement, &long, &key);
        let opened: SettlementRecord =
            open(Kind::Statement, &statement, &key.verifying_key()).unwrap();
        assert_eq!(opened, long);
        let record = seal(Kind::Settlement, &long, &key);
        assert!(matches!(
            open::<SettlementRecord>(Kind::Settlement, &record, &key.verifying_key()),
            Err(VoucherError::Malformed(_))
        ));
    }

    #[test]
    fn a_document_opens_only_as_its_own_kind_with_its_own_key() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let sealed = seal(Kind::Settlement, &record(), &key);
        let opened: SettlementRecord =
            open(Kind::Settlement, &sealed, &key.verifying_key()).unwrap();
        assert_eq!(opened, record());
        assert_eq!(peek::<SettlementRecord>(&sealed).unwrap(), record());
        assert_eq!(
            open::<Receipt>(Kind::Receipt, &sealed, &key.verifying_key()),
            Err(VoucherError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[6; 32]);
        assert_eq!(
            open::<SettlementRecord>(Kind::Settlement, &sealed, &other.verifying_key()),
            Err(VoucherError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn any_bit_flip_fails(bit in 0usize..1000) {
            let key = SigningKey::from_bytes(&[5; 32]);
            let mut sealed = seal(Kind::Receipt, &record(), &key);
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open::<SettlementRecord>(Kind::Receipt, &sealed, &key.verifying_key()).is_err());
        }
    }
}
