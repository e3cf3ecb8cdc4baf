//! Signed vouchers: the body bytes, the ed25519 signature over a domain-separated encoding of
//! them, and strict verification.
//!
//! The issuer encodes the body once, signs those bytes, and ships them unchanged; a verifier
//! checks the signature over the very bytes it received and only then decodes the body for use.
//! Before verification only the issuer id and key id are read, to pick the key.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;
use rand::RngCore;

use crate::{Day, v1};

/// Prefix of the signed message, so that a voucher signature can never be taken for the
/// signature of any other schein document (receipts, statements) or vice versa.
pub const SIGNING_CONTEXT: &[u8] = b"schein/voucher/v1";

/// First byte of a signed voucher's wire form; a later format gets another byte.
pub const FORMAT_V1: u8 = 1;

/// Version of [`v1::VoucherBody`] this code writes and accepts.
pub const BODY_VERSION: u32 = 1;

const SIGNATURE_LEN: usize = 64;

/// Longest body accepted: a real body is under 100 bytes. Keeps hostile input cheap.
pub const MAX_BODY_LEN: usize = 512;

/// Longest validity of one voucher, first to last day: about one quarter is usual, a year the
/// most any issuer may sign and any verifier accepts.
pub const MAX_VALIDITY_DAYS: i32 = 366;

/// How far back an office may date a voucher's first day (a treatment in the last weeks); a
/// new signing key's window opens as far back, so that it can sign such vouchers.
pub const MAX_BACKDATE_DAYS: i32 = 31;

/// Claims must be accepted by a redeeming node within this many months after a voucher's
/// validity ends (DESIGN.md, "Deadline").
pub const CLAIM_DEADLINE_MONTHS: u32 = 3;

/// The last day on which a claim on a voucher valid until `valid_until` may be accepted.
pub fn claim_deadline(valid_until: Day) -> Day {
    valid_until
        .add_months(CLAIM_DEADLINE_MONTHS)
        .unwrap_or(valid_until)
}

/// Length of a serial in bytes (80 bits).
pub const SERIAL_LEN: usize = 10;

/// The voucher serial: 80 random bits, the only pseudonym in schein.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial([u8; SERIAL_LEN]);

impl Serial {
    /// Draws a fresh serial from the operating system's random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; SERIAL_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub const fn from_bytes(bytes: [u8; SERIAL_LEN]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, VoucherError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| VoucherError::Malformed("a serial has 10 bytes"))
    }

    pub const fn as_bytes(&self) -> &[u8; SERIAL_LEN] {
        &self.0
    }
}

/// Serials are never printed by `Debug`, not even in part, so that a stray `{:?}` cannot put
/// one in a log (privacy rule 5: a 4-character prefix already singles a voucher out).
impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Serial(…)")
    }
}

/// Identifies one signing key of one issuer: hex of the first four bytes of the public key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let bytes = key.as_bytes();
        Self(bytes[..4].iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a signed voucher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    #[error("the voucher is damaged: {0}")]
    Malformed(&'static str),
    #[error("the voucher uses format {0}, which this version of schein does not know")]
    UnknownFormat(u8),
    #[error("the voucher's signature is not genuine")]
    BadSignature,
}

/// The issuer and key named by a voucher, read before its signature is checked, only to choose
/// the key to check it with.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyReference {
    #[prost(string, tag = "2")]
    issuer: String,
    #[prost(string, tag = "4")]
    key_id: String,
}

/// A voucher as shipped: the exact body bytes the issuer signed, and the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedVoucher {
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl fmt::Debug for SignedVoucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedVoucher")
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}

impl SignedVoucher {
    /// Encodes `body` and signs the encoding with `key`.
    pub fn sign(body: &v1::VoucherBody, key: &SigningKey) -> Self {
        let body = body.encode_to_vec();
        let signature = key.sign(&signed_message(&body)).to_bytes();
        Self { body, signature }
    }

    /// The wire form: format byte, body bytes, 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + self.body.len() + SIGNATURE_LEN);
        bytes.push(FORMAT_V1);
        bytes.extend_from_slice(&self.body);
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Splits the wire form; checks structure only, not the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VoucherError> {
        let (&format, rest) = bytes
            .split_first()
            .ok_or(VoucherError::Malformed("it is empty"))?;
        if format != FORMAT_V1 {
            return Err(VoucherError::UnknownFormat(format));
        }
        if rest.len() <= SIGNATURE_LEN {
            return Err(VoucherError::Malformed("it is too short"));
        }
        let (body, signature) = rest.split_at(rest.len() - SIGNATURE_LEN);
        if body.len() > MAX_BODY_LEN {
            return Err(VoucherError::Malformed("it is too long"));
        }
        let signature = signature
            .try_into()
            .map_err(|_| VoucherError::Malformed("the signature has the wrong length"))?;
        Ok(Self {
            body: body.to_vec(),
            signature,
        })
    }

    /// The issuer id and key id the voucher claims, to look up the key with. Not yet trusted.
    pub fn claimed_key(&self) -> Result<(String, KeyId), VoucherError> {
        let reference = KeyReference::decode(self.body.as_slice())
            .map_err(|_| VoucherError::Malformed("its content cannot be read"))?;
        Ok((reference.issuer, KeyId(reference.key_id)))
    }

    /// Checks the signature strictly with `key` and only then decodes the body.
    pub fn verify(&self, key: &VerifyingKey) -> Result<VerifiedVoucher, VoucherError> {
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(&self.body), &signature)
            .map_err(|_| VoucherError::BadSignature)?;
        let body = v1::VoucherBody::decode(self.body.as_slice())
            .map_err(|_| VoucherError::Malformed("its content cannot be read"))?;
        VerifiedVoucher::from_body(body)
    }
}

impl SignedVoucher {
    /// Decodes the body without checking the signature. Only for vouchers a node signed itself
    /// and reads back from its own storage; anything received goes through [`Self::verify`].
    pub fn decode_own(&self) -> Result<VerifiedVoucher, VoucherError> {
        let body = v1::VoucherBody::decode(self.body.as_slice())
            .map_err(|_| VoucherError::Malformed("its content cannot be read"))?;
        VerifiedVoucher::from_body(body)
    }
}

/// A voucher whose signature has been checked, with its body decoded and its fields validated.
/// Says nothing yet about validity today, scope or revocation.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedVoucher {
    pub issuer: String,
    pub serial: Serial,
    pub key_id: KeyId,
    pub valid_from: Day,
    pub valid_until: Day,
    /// The day it was signed (the first day of validity for vouchers without one).
    pub issued_on: Day,
    pub scope: Vec<v1::Scope>,
    pub cap_cents: Option<i64>,
    /// Charged to the issuer's emergency budget.
    pub emergency: bool,
    /// Only this provider (`node/name`) may claim on it.
    pub bound_provider: Option<String>,
}

impl VerifiedVoucher {
    fn from_body(body: v1::VoucherBody) -> Result<Self, VoucherError> {
        if body.version != BODY_VERSION {
            return Err(VoucherError::Malformed(
                "its content has an unknown version",
            ));
        }
        let serial = Serial::from_slice(&body.serial)?;
        let valid_from: Day = body
            .valid_from
            .ok_or(VoucherError::Malformed("it has no first day of validity"))?
            .into();
        let valid_until: Day = body
            .valid_until
            .ok_or(VoucherError::Malformed("it has no last day of validity"))?
            .into();
        if valid_until < valid_from {
            return Err(VoucherError::Malformed(
                "its validity ends before it begins",
            ));
        }
        let span =
            i64::from(valid_until.days_since_epoch()) - i64::from(valid_from.days_since_epoch());
        if span >= i64::from(MAX_VALIDITY_DAYS) {
            return Err(VoucherError::Malformed(
                "it is valid for longer than a year",
            ));
        }
        let scope = body
            .scope
            .iter()
            .map(|&s| v1::Scope::try_from(s).map_err(|_| VoucherError::Malformed("unknown scope")))
            .collect::<Result<Vec<_>, _>>()?;
        if body.cap_cents.is_some_and(|cap| cap < 0) {
            return Err(VoucherError::Malformed("its cap is negative"));
        }
        Ok(Self {
            issuer: body.issuer,
            serial,
            key_id: KeyId(body.key_id),
            valid_from,
            valid_until,
            issued_on: body.issued_on.map_or(valid_from, Into::into),
            scope,
            cap_cents: body.cap_cents,
            emergency: body.emergency,
            bound_provider: Some(body.bound_provider).filter(|p| !p.is_empty()),
        })
    }

    /// Whether the voucher covers `scope`. Ambulatory basic care is always covered.
    pub fn covers(&self, scope: v1::Scope) -> bool {
        matches!(scope, v1::Scope::Unspecified | v1::Scope::Ambulatory)
            || self.scope.contains(&scope)
    }
}

/// Builds the body of a new voucher; the issuer signs it with [`SignedVoucher::sign`].
pub fn new_body(
    issuer: &str,
    serial: Serial,
    key: &VerifyingKey,
    valid_from: Day,
    valid_until: Day,
    scope: &[v1::Scope],
    cap_cents: Option<i64>,
) -> v1::VoucherBody {
    let mut scope: Vec<i32> = scope
        .iter()
        .filter(|s| !matches!(s, v1::Scope::Unspecified))
        .map(|&s| s as i32)
        .collect();
    if !scope.contains(&(v1::Scope::Ambulatory as i32)) {
        scope.push(v1::Scope::Ambulatory as i32);
    }
    scope.sort_unstable();
    scope.dedup();
    v1::VoucherBody {
        version: BODY_VERSION,
        issuer: issuer.to_owned(),
        serial: serial.as_bytes().to_vec(),
        key_id: KeyId::of(key).0,
        valid_from: Some(valid_from.into()),
        valid_until: Some(valid_until.into()),
        scope,
        cap_cents,
        emergency: false,
        bound_provider: String::new(),
        issued_on: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample(key: &SigningKey) -> SignedVoucher {
        let body = new_body(
            "leipzig",
            Serial::from_bytes([7; SERIAL_LEN]),
            &key.verifying_key(),
            Day::parse("2026-10-01").unwrap(),
            Day::parse("2026-12-31").unwrap(),
            &[v1::Scope::Medication],
            Some(50_000),
        );
        SignedVoucher::sign(&body, key)
    }

    #[test]
    fn verifies_with_the_issuers_key_only() {
        let voucher = sample(&key(1));
        let verified = voucher.verify(&key(1).verifying_key()).unwrap();
        assert_eq!(verified.issuer, "leipzig");
        assert_eq!(verified.cap_cents, Some(50_000));
        assert!(verified.covers(v1::Scope::Medication));
        assert!(!verified.covers(v1::Scope::Dental));
        assert_eq!(
            voucher.verify(&key(2).verifying_key()),
            Err(VoucherError::BadSignature)
        );
    }

    #[test]
    fn wire_form_round_trips() {
        let voucher = sample(&key(1));
        let again = SignedVoucher::from_bytes(&voucher.to_bytes()).unwrap();
        assert_eq!(again, voucher);
        let (issuer, key_id) = again.claimed_key().unwrap();
        assert_eq!(issuer, "leipzig");
        assert_eq!(key_id, KeyId::of(&key(1).verifying_key()));
    }

    #[test]
    fn signature_is_domain_separated() {
        let voucher = sample(&key(1));
        let bare = key(1).sign(&voucher.body).to_bytes();
        let forged = SignedVoucher {
            body: voucher.body.clone(),
            signature: bare,
        };
        assert_eq!(
            forged.verify(&key(1).verifying_key()),
            Err(VoucherError::BadSignature)
        );
    }

    #[test]
    fn refuses_broken_wire_forms() {
        let bytes = sample(&key(1)).to_bytes();
        assert!(SignedVoucher::from_bytes(&[]).is_err());
        assert!(SignedVoucher::from_bytes(&bytes[..60]).is_err());
        let mut other_format = bytes.clone();
        other_format[0] = 9;
        assert_eq!(
            SignedVoucher::from_bytes(&other_format),
            Err(VoucherError::UnknownFormat(9))
        );
        let mut huge = vec![FORMAT_V1];
        huge.extend(std::iter::repeat_n(0u8, 4096));
        assert!(SignedVoucher::from_bytes(&huge).is_err());
    }

    #[test]
    fn serial_debug_does_not_leak_the_serial() {
        let serial = Serial::from_bytes([0xab; SERIAL_LEN]);
        let debug = format!("{serial:?}");
        assert_eq!(debug, "Serial(…)");
        let text = crate::code::serial_text(&serial);
        for piece in text.as_bytes().windows(4) {
            assert!(!debug.contains(std::str::from_utf8(piece).unwrap()));
        }
    }
}
