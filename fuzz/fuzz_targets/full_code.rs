//! The full voucher code and the signed voucher behind it.
//!
//! The first byte picks what the rest is:
//! - 0: text for `VoucherCode::parse` / `FullCode::parse` / `ShortCode::parse`. Whatever parses
//!   prints in canonical form, which parses to the same value; a full code's canonical form is
//!   the (trimmed) text itself, since decoding is strict.
//! - 1: a signed voucher's wire form for `SignedVoucher::from_bytes`. Whatever splits writes
//!   back byte for byte; reading its claimed key and verifying it never panic.
//! - 2: a voucher body, signed here with a fixed key: verification decodes and validates
//!   arbitrary bodies, and an accepted voucher keeps the invariants verifiers rely on and
//!   survives the trip through its full code.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use schein_proto::voucher::{FORMAT_V1, MAX_VALIDITY_DAYS, SIGNING_CONTEXT};
use schein_proto::{FullCode, ShortCode, SignedVoucher, VoucherCode};

/// A fixed issuer key: the fuzzer must be able to make genuine signatures.
static KEY: LazyLock<ed25519_dalek::SigningKey> =
    LazyLock::new(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]));

fn text(text: &str) {
    match VoucherCode::parse(text) {
        Ok(code) => {
            let canonical = match &code {
                VoucherCode::Full(full) => full.to_string(),
                VoucherCode::Short(short) => short.to_string(),
            };
            assert_eq!(VoucherCode::parse(&canonical).as_ref(), Ok(&code));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    if let Ok(full) = FullCode::parse(text) {
        assert_eq!(
            full.to_string(),
            text.trim(),
            "a full code has one spelling"
        );
        assert_eq!(FullCode::parse(&full.to_string()).as_ref(), Ok(&full));
        let _ = full.0.claimed_key();
        assert!(full.0.verify(&KEY.verifying_key()).is_err() || wire_is_ours(&full.0));
    }
    if let Ok(short) = ShortCode::parse(text) {
        let canonical = short.to_string();
        assert_eq!(ShortCode::parse(&canonical).as_ref(), Ok(&short));
        assert_eq!(
            ShortCode::parse(&canonical).map(|s| s.to_string()),
            Ok(canonical)
        );
    }
}

/// Whether `voucher` carries a signature by the fixed key: only then may it verify.
fn wire_is_ours(voucher: &SignedVoucher) -> bool {
    use ed25519_dalek::Verifier;
    let bytes = voucher.to_bytes();
    let (body, signature) = bytes[1..].split_at(bytes.len() - 1 - 64);
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    let message = [SIGNING_CONTEXT, body].concat();
    KEY.verifying_key().verify(&message, &signature).is_ok()
}

fn wire(bytes: &[u8]) {
    if let Ok(voucher) = SignedVoucher::from_bytes(bytes) {
        assert_eq!(voucher.to_bytes(), bytes, "the wire form has one spelling");
        let _ = voucher.claimed_key();
        let _ = voucher.verify(&KEY.verifying_key());
        let full = FullCode(voucher);
        assert_eq!(FullCode::parse(&full.to_string()).as_ref(), Ok(&full));
    }
}

fn body(body: &[u8]) {
    use ed25519_dalek::Signer;
    let signature = KEY.sign(&[SIGNING_CONTEXT, body].concat());
    let bytes = [&[FORMAT_V1], body, &signature.to_bytes()[..]].concat();
    let Ok(voucher) = SignedVoucher::from_bytes(&bytes) else {
        return;
    };
    let Ok(verified) = voucher.verify(&KEY.verifying_key()) else {
        return;
    };
    assert!(verified.valid_from <= verified.valid_until);
    let span = verified.valid_until.days_since_epoch() - verified.valid_from.days_since_epoch();
    assert!(span < MAX_VALIDITY_DAYS);
    assert!(verified.cap_cents.is_none_or(|cap| cap >= 0));
    assert!(
        verified
            .bound_provider
            .as_ref()
            .is_none_or(|p| !p.is_empty())
    );
    let (issuer, key_id) = voucher
        .claimed_key()
        .expect("a verified voucher names its key");
    assert_eq!(issuer, verified.issuer);
    assert_eq!(key_id, verified.key_id);
    let text = FullCode(voucher).to_string();
    let again = FullCode::parse(&text).expect("a full code reads back");
    assert_eq!(again.0.verify(&KEY.verifying_key()), Ok(verified));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => text(&String::from_utf8_lossy(rest)),
        1 => wire(rest),
        _ => body(rest),
    }
});
