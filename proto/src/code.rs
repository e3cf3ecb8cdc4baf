//! The two printed forms of a voucher.
//!
//! - The **full code** carries the whole signed voucher: `SCHEIN:` followed by the wire form in
//!   RFC 4648 base32 (upper case, no padding). Every character is in the QR code's alphanumeric
//!   set, so the QR code stays small, and anyone with the issuer's public key can verify it
//!   offline. Decoding is strict: one altered character never yields a voucher.
//! - The **short code** is what a person reads aloud or types: the issuer's prefix, the 80-bit
//!   serial in Crockford base32, and a check character, grouped by fours:
//!   `LEJ-7KQ4-M2XD-9FTR-WB3H-Q`. Case does not matter, `O` reads as `0` and `I`/`L` as `1`. The
//!   check character is a weighted sum over GF(32) with weight α (a root of x⁵ + x² + 1):
//!   changing one character changes the sum by a non-zero multiple of a power of α, and swapping
//!   two neighbours changes it by (α + 1)·αᵏ·(a − b), which is zero only if a = b. So every
//!   single typo and every swap of neighbouring characters is caught.

use std::fmt;

use data_encoding::BASE32_NOPAD;

use crate::voucher::{SERIAL_LEN, Serial, SignedVoucher, VoucherError};

/// Starts every full code.
pub const FULL_CODE_PREFIX: &str = "SCHEIN:";

/// Crockford's base32 alphabet: no I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of the serial in a short code (80 bits, 5 bits each).
const SERIAL_CHARS: usize = 16;

/// Bounds of an issuer prefix, in characters.
pub const PREFIX_LEN: std::ops::RangeInclusive<usize> = 2..=5;

/// Why a typed or scanned code could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("this is not a voucher code")]
    NotACode,
    #[error("the code has {0} characters where {1} were expected")]
    WrongLength(usize, String),
    #[error("the code contains '{0}', which never appears in voucher codes")]
    BadCharacter(char),
    #[error("the code does not add up (check character): probably a typo")]
    CheckCharacter,
    #[error("the voucher code is damaged: {0}")]
    Damaged(#[from] VoucherError),
}

/// Value of one short-code character, reading `O` as `0`, `I` and `L` as `1`, any case.
fn symbol_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == c)
        .map(|v| v as u8)
}

/// Multiplies by α in GF(32) = GF(2)[x] / (x⁵ + x² + 1).
fn times_alpha(v: u8) -> u8 {
    let shifted = v << 1;
    if shifted & 0x20 != 0 {
        shifted ^ 0x25
    } else {
        shifted
    }
}

/// Σ αⁿ⁻ⁱ·vᵢ over the symbols (Horner's rule). Zero over a whole code means the check holds.
fn weighted_sum(symbols: impl IntoIterator<Item = u8>) -> u8 {
    symbols.into_iter().fold(0, |sum, v| times_alpha(sum) ^ v)
}

/// Crockford base32 text of a serial (16 characters, no separators).
pub(crate) fn serial_text(serial: &Serial) -> String {
    serial_symbols(serial)
        .map(|v| char::from(ALPHABET[usize::from(v)]))
        .collect()
}

fn serial_symbols(serial: &Serial) -> impl Iterator<Item = u8> {
    let mut bits = [0u8; 16];
    bits[16 - SERIAL_LEN..].copy_from_slice(serial.as_bytes());
    let value = u128::from_be_bytes(bits);
    (0..SERIAL_CHARS)
        .rev()
        .map(move |i| ((value >> (5 * i)) & 0x1f) as u8)
}

fn serial_from_symbols(symbols: &[u8]) -> Serial {
    let value = symbols
        .iter()
        .fold(0u128, |acc, &v| (acc << 5) | u128::from(v));
    let bytes = value.to_be_bytes();
    let mut serial = [0u8; SERIAL_LEN];
    serial.copy_from_slice(&bytes[16 - SERIAL_LEN..]);
    Serial::from_bytes(serial)
}

/// The short form of a voucher: issuer prefix and serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortCode {
    prefix: String,
    serial: Serial,
}

impl ShortCode {
    /// A short code for `serial` under `prefix`; the prefix must pass [`validate_prefix`].
    pub fn new(prefix: &str, serial: Serial) -> Result<Self, CodeError> {
        validate_prefix(prefix)?;
        Ok(Self {
            prefix: prefix.to_ascii_uppercase(),
            serial,
        })
    }

    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// The prefix as it was written (upper case).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Parses a typed short code: separators (`-`, spaces) anywhere, any case.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let chars: Vec<char> = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t' | '\u{a0}'))
            .collect();
        let symbols = chars
            .iter()
            .map(|&c| symbol_value(c).ok_or(CodeError::BadCharacter(c)))
            .collect::<Result<Vec<u8>, _>>()?;
        let prefix_len = symbols
            .len()
            .checked_sub(SERIAL_CHARS + 1)
            .filter(|len| PREFIX_LEN.contains(len))
            .ok_or_else(|| {
                CodeError::WrongLength(
                    symbols.len(),
                    format!(
                        "{}–{}",
                        PREFIX_LEN.start() + SERIAL_CHARS + 1,
                        PREFIX_LEN.end() + SERIAL_CHARS + 1
                    ),
                )
            })?;
        if weighted_sum(symbols.iter().copied()) != 0 {
            return Err(CodeError::CheckCharacter);
        }
        let serial = serial_from_symbols(&symbols[prefix_len..prefix_len + SERIAL_CHARS]);
        Ok(Self {
            prefix: chars[..prefix_len]
                .iter()
                .collect::<String>()
                .to_ascii_uppercase(),
            serial,
        })
    }

    /// The prefix in canonical form (`O`→`0`, `I`/`L`→`1`), for comparing prefixes as people
    /// read them.
    pub fn prefix_key(&self) -> String {
        prefix_key(&self.prefix)
    }

    fn check_character(&self) -> char {
        let symbols = self
            .prefix
            .chars()
            .filter_map(symbol_value)
            .chain(serial_symbols(&self.serial));
        let check = times_alpha(weighted_sum(symbols));
        char::from(ALPHABET[usize::from(check)])
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)?;
        let serial = serial_text(&self.serial);
        for group in serial.as_bytes().chunks(4) {
            write!(f, "-{}", String::from_utf8_lossy(group))?;
        }
        write!(f, "-{}", self.check_character())
    }
}

/// Canonical form of a prefix (`O`→`0`, `I`/`L`→`1`, upper case). Two prefixes that read alike
/// have the same key.
pub fn prefix_key(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| symbol_value(c).map_or(c, |v| char::from(ALPHABET[usize::from(v)])))
        .collect()
}

/// A prefix is 2 to 5 letters or digits of the short-code alphabet (no `U`).
pub fn validate_prefix(prefix: &str) -> Result<(), CodeError> {
    let len = prefix.chars().count();
    if !PREFIX_LEN.contains(&len) {
        return Err(CodeError::WrongLength(
            len,
            format!("{}–{} (prefix)", PREFIX_LEN.start(), PREFIX_LEN.end()),
        ));
    }
    match prefix.chars().find(|&c| symbol_value(c).is_none()) {
        Some(c) => Err(CodeError::BadCharacter(c)),
        None => Ok(()),
    }
}

/// The full, self-contained form of a signed voucher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullCode(pub SignedVoucher);

impl FullCode {
    /// Parses a full code strictly: exact prefix, upper-case base32 without padding, no stray
    /// bits. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let payload = text
            .trim()
            .strip_prefix(FULL_CODE_PREFIX)
            .ok_or(CodeError::NotACode)?;
        let bytes = BASE32_NOPAD
            .decode(payload.as_bytes())
            .map_err(|_| VoucherError::Malformed("the code's characters do not decode"))?;
        Ok(Self(SignedVoucher::from_bytes(&bytes)?))
    }
}

impl fmt::Display for FullCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{FULL_CODE_PREFIX}{}",
            BASE32_NOPAD.encode(&self.0.to_bytes())
        )
    }
}

/// A code as a person hands it over: either form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoucherCode {
    Full(FullCode),
    Short(ShortCode),
}

impl VoucherCode {
    /// Reads a full code if the text starts like one (in any case), else a short code.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let trimmed = text.trim();
        let looks_full = trimmed
            .get(..FULL_CODE_PREFIX.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(FULL_CODE_PREFIX));
        if looks_full {
            FullCode::parse(trimmed).map(Self::Full)
        } else if trimmed.is_empty() {
            Err(CodeError::NotACode)
        } else {
            ShortCode::parse(trimmed).map(Self::Short)
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;
    use crate::{Day, v1, voucher::new_body};

    fn serial_strategy() -> impl Strategy<Value = Serial> {
        any::<[u8; SERIAL_LEN]>().prop_map(Serial::from_bytes)
    }

    fn prefix_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(ALPHABET.to_vec()), PREFIX_LEN)
            .prop_map(|chars| chars.into_iter().map(char::from).collect())
    }

    fn signed(serial: Serial, cap: Option<i64>, seed: u8) -> (SignedVoucher, SigningKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let from = Day::from_days_since_epoch(20_000);
        let body = new_body(
            "leipzig",
            serial,
            &key.verifying_key(),
            from,
            from.checked_add_days(90).unwrap(),
            &[v1::Scope::PregnancyCare],
            cap,
        );
        (SignedVoucher::sign(&body, &key), key)
    }

    /// Each character of the short-code alphabet and the look-alikes people may type.
    const TYPEABLE: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    #[test]
    fn short_code_looks_like_the_design() {
        let code = ShortCode::new("LEJ", Serial::from_bytes([0; SERIAL_LEN])).unwrap();
        let text = code.to_string();
        assert_eq!(text.len(), "LEJ-7KQ4-M2XD-9FTR-WB3H-Q".len());
        assert!(text.starts_with("LEJ-0000-0000-0000-0000-"));
        assert_eq!(ShortCode::parse(&text).unwrap(), code);
    }

    #[test]
    fn short_code_reads_look_alikes_and_case() {
        let code = ShortCode::new("LEJ", Serial::from_bytes([0; SERIAL_LEN])).unwrap();
        let text = code.to_string().replace('0', "o").to_lowercase();
        let parsed = ShortCode::parse(&text).unwrap();
        assert_eq!(parsed.serial(), code.serial());
        assert_eq!(parsed.prefix_key(), prefix_key("1EJ"));
    }

    #[test]
    fn refuses_bad_prefixes() {
        assert!(validate_prefix("L").is_err());
        assert!(validate_prefix("LEIPZG").is_err());
        assert!(validate_prefix("LÜ").is_err());
        assert!(validate_prefix("UL").is_err());
        assert!(validate_prefix("DD").is_ok());
    }

    proptest! {
        #[test]
        fn short_code_round_trips(prefix in prefix_strategy(), serial in serial_strategy()) {
            let code = ShortCode::new(&prefix, serial).unwrap();
            let text = code.to_string();
            prop_assert_eq!(ShortCode::parse(&text).unwrap(), code.clone());
            prop_assert_eq!(ShortCode::parse(&text.replace('-', "")).unwrap(), code.clone());
            prop_assert_eq!(ShortCode::parse(&text.to_lowercase()).unwrap(), code);
        }

        #[test]
        fn every_single_typo_is_caught(prefix in prefix_strategy(), serial in serial_strategy()) {
            let text = ShortCode::new(&prefix, serial).unwrap().to_string();
            let chars: Vec<char> = text.chars().collect();
            for (i, &original) in chars.iter().enumerate() {
                if original == '-' {
                    continue;
                }
                for typo in TYPEABLE.chars() {
                    if symbol_value(typo) == symbol_value(original) {
                        continue; // reads alike: not a typo
                    }
                    let mut altered = chars.clone();
                    altered[i] = typo;
                    let altered: String = altered.into_iter().collect();
                    prop_assert!(ShortCode::parse(&altered).is_err(), "{} -> {}", text, altered);
                }
            }
        }

        #[test]
        fn every_neighbour_swap_is_caught(prefix in prefix_strategy(), serial in serial_strategy()) {
            let text = ShortCode::new(&prefix, serial).unwrap().to_string();
            // Neighbours as read aloud: separators do not count as characters.
            let symbols: Vec<char> = text.chars().filter(|&c| c != '-').collect();
            for i in 0..symbols.len() - 1 {
                if symbol_value(symbols[i]) == symbol_value(symbols[i + 1]) {
                    continue;
                }
                let mut swapped = symbols.clone();
                swapped.swap(i, i + 1);
                let swapped: String = swapped.into_iter().collect();
                prop_assert!(ShortCode::parse(&swapped).is_err(), "{} -> {}", text, swapped);
            }
        }

        #[test]
        fn full_code_round_trips(serial in serial_strategy(), cap in proptest::option::of(0i64..10_000_000), seed in 1u8..=255) {
            let (voucher, key) = signed(serial, cap, seed);
            let text = FullCode(voucher.clone()).to_string();
            prop_assert!(text.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ':'));
            let parsed = FullCode::parse(&text).unwrap();
            prop_assert_eq!(&parsed.0, &voucher);
            let verified = parsed.0.verify(&key.verifying_key()).unwrap();
            prop_assert_eq!(verified.serial, serial);
            prop_assert_eq!(verified.cap_cents, cap);
            prop_assert_eq!(VoucherCode::parse(&text).unwrap(), VoucherCode::Full(parsed));
        }

        #[test]
        fn any_bit_flip_fails_verification(serial in serial_strategy(), seed in 1u8..=255) {
            let (voucher, key) = signed(serial, Some(50_000), seed);
            let text = FullCode(voucher).to_string().into_bytes();
            for i in 0..text.len() {
                for bit in 0..8 {
                    let mut flipped = text.clone();
                    flipped[i] ^= 1 << bit;
                    let accepted = std::str::from_utf8(&flipped)
                        .ok()
                        .and_then(|t| FullCode::parse(t).ok())
                        .and_then(|code| code.0.verify(&key.verifying_key()).ok());
                    prop_assert!(accepted.is_none(), "flip of bit {} in byte {} accepted", bit, i);
                }
            }
        }

        #[test]
        fn any_bit_flip_in_the_wire_form_fails(serial in serial_strategy(), seed in 1u8..=255) {
            let (voucher, key) = signed(serial, None, seed);
            let bytes = voucher.to_bytes();
            for i in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[i / 8] ^= 1 << (i % 8);
                let accepted = SignedVoucher::from_bytes(&flipped)
                    .ok()
                    .and_then(|v| v.verify(&key.verifying_key()).ok());
                prop_assert!(accepted.is_none(), "flip of bit {} accepted", i);
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = VoucherCode::parse(&text);
            let _ = ShortCode::parse(&text);
            let _ = FullCode::parse(&format!("{FULL_CODE_PREFIX}{text}"));
        }

        /// Whatever parses prints in a canonical form that parses to the same code. The text is
        /// drawn from the short-code alphabet and separators, so that some of it parses.
        #[test]
        fn parsed_codes_print_canonically(text in "[0-9A-Za-z -]{19,30}") {
            if let Ok(code) = VoucherCode::parse(&text) {
                let VoucherCode::Short(short) = &code else {
                    return Err(TestCaseError::fail("a full code without its prefix"));
                };
                let canonical = short.to_string();
                prop_assert_eq!(VoucherCode::parse(&canonical), Ok(code.clone()));
                prop_assert_eq!(ShortCode::parse(&canonical).unwrap().to_string(), canonical);
            }
        }

        /// Case and the look-alikes (`O` for `0`, `I` and `L` for `1`) may be mixed freely.
        #[test]
        fn short_codes_read_alike_however_written(
            prefix in prefix_strategy(),
            serial in serial_strategy(),
            spellings in proptest::collection::vec(0u8..3, 32),
        ) {
            let code = ShortCode::new(&prefix, serial).unwrap();
            let text: String = code
                .to_string()
                .chars()
                .zip(spellings.iter().cycle())
                .map(|(c, spelling)| match (c, spelling) {
                    ('0', 1) => 'o',
                    ('0', 2) => 'O',
                    ('1', 1) => 'l',
                    ('1', 2) => 'I',
                    (c, 1) => c.to_ascii_lowercase(),
                    (c, _) => c,
                })
                .collect();
            let parsed = ShortCode::parse(&text).unwrap();
            prop_assert_eq!(parsed.serial(), serial);
            prop_assert_eq!(parsed.prefix_key(), code.prefix_key());
        }

        /// The wire form has one spelling: what splits writes back byte for byte.
        #[test]
        fn wire_forms_have_one_spelling(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let mut bytes = bytes;
            if let Some(first) = bytes.first_mut() {
                *first %= 3; // mostly the known format byte
            }
            if let Ok(voucher) = SignedVoucher::from_bytes(&bytes) {
                prop_assert_eq!(voucher.to_bytes(), bytes);
            }
        }

        /// Any body the issuer's key signed either verifies into a voucher that keeps the
        /// invariants verifiers rely on, and survives the trip through its full code, or is
        /// refused; it never panics.
        #[test]
        fn signed_bodies_verify_into_sound_vouchers(
            version in 0u32..3,
            serial in proptest::collection::vec(any::<u8>(), 9..12),
            from in any::<i32>(),
            span in prop_oneof![-2i32..400, any::<i32>()],
            scope in proptest::collection::vec(-1i32..12, 0..4),
            cap in proptest::option::of(prop_oneof![-5i64..5, any::<i64>()]),
            emergency in any::<bool>(),
            bound_provider in "([a-z]{1,8}/[a-z]{1,8})?",
            issued in proptest::option::of(any::<i32>()),
        ) {
            let key = SigningKey::from_bytes(&[3; 32]);
            let body = v1::VoucherBody {
                version,
                issuer: "leipzig".into(),
                serial,
                key_id: crate::KeyId::of(&key.verifying_key()).0,
                valid_from: Some(v1::Day { days: from }),
                valid_until: Some(v1::Day { days: from.wrapping_add(span) }),
                scope,
                cap_cents: cap,
                emergency,
                bound_provider,
                issued_on: issued.map(|days| v1::Day { days }),
            };
            let signed = SignedVoucher::sign(&body, &key);
            if let Ok(voucher) = signed.verify(&key.verifying_key()) {
                prop_assert!(voucher.valid_from <= voucher.valid_until);
                let days = i64::from(voucher.valid_until.days_since_epoch())
                    - i64::from(voucher.valid_from.days_since_epoch());
                prop_assert!(days < i64::from(crate::voucher::MAX_VALIDITY_DAYS));
                prop_assert!(voucher.cap_cents.is_none_or(|cap| cap >= 0));
                let again = FullCode::parse(&FullCode(signed).to_string()).unwrap();
                prop_assert_eq!(again.0.verify(&key.verifying_key()), Ok(voucher));
            }
        }
    }
}
