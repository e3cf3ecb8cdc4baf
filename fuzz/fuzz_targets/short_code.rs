//! The short code: issuer prefix, serial in Crockford base32, GF(32) check character.
//!
//! For any text: parsing never panics. Whatever parses prints in canonical form, which parses
//! to the same value and prints the same again. Parsing does not depend on case, nor on how the
//! look-alikes are written (`O`/`0`, `I`/`L`/`1`): the text in upper case, in lower case and
//! with every look-alike replaced by its digit reads the same serial and prefix key, or fails
//! alike. In a parsed code, replacing one character by one that reads differently is caught.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schein_proto::ShortCode;

/// How a person may write each value: the digit, and the letters read as it.
fn canonical_look_alikes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'o' | 'O' => '0',
            'i' | 'I' | 'l' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// Serial and prefix key: what a code means, whichever way it was written.
fn meaning(code: &ShortCode) -> (schein_proto::Serial, String) {
    (code.serial(), code.prefix_key())
}

fuzz_target!(|data: &[u8]| {
    // The last byte, if any, chooses a character to alter; the rest is the text.
    let (typo, text) = match data.split_last() {
        Some((&typo, rest)) => (typo, String::from_utf8_lossy(rest)),
        None => return,
    };
    let parsed = ShortCode::parse(&text);
    let variants = [
        text.to_ascii_uppercase(),
        text.to_ascii_lowercase(),
        canonical_look_alikes(&text),
    ];
    for variant in &variants {
        let again = ShortCode::parse(variant);
        assert_eq!(
            again.as_ref().map(meaning).ok(),
            parsed.as_ref().map(meaning).ok(),
            "{text:?} and {variant:?} read differently"
        );
    }
    let Ok(code) = parsed else {
        return;
    };
    let canonical = code.to_string();
    let reparsed = ShortCode::parse(&canonical).expect("a printed code parses");
    assert_eq!(reparsed, code);
    assert_eq!(reparsed.to_string(), canonical);
    assert_eq!(
        ShortCode::new(code.prefix(), code.serial()).as_ref(),
        Ok(&code)
    );

    // One character replaced by another value of the alphabet must not pass.
    let mut chars: Vec<char> = canonical.chars().collect();
    let positions: Vec<usize> = (0..chars.len()).filter(|&i| chars[i] != '-').collect();
    let at = positions[usize::from(typo) % positions.len()];
    let alphabet = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let replacement = char::from(alphabet[usize::from(typo / 8) % alphabet.len()]);
    let reads_as = |c: char| canonical_look_alikes(&c.to_string());
    if reads_as(replacement) != reads_as(chars[at]) {
        chars[at] = replacement;
        let altered: String = chars.into_iter().collect();
        assert!(
            ShortCode::parse(&altered).is_err(),
            "{canonical} -> {altered} passed"
        );
    }
});
