//! Member entries and roster files as operators hand them over: the properties the
//! `member_entry` fuzz target checks (`fuzz/`), here as proptests in the normal suite. Parsing
//! any text never panics; a valid entry or roster written out and read back is the same.

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use schein_node::fees::FeeSchedule;
use schein_node::pki::NodeCa;
use schein_node::roster::{MemberEntry, MemberKind, Roster, SigningKeyEntry};
use schein_proto::Day;

/// Making a CA costs a key generation; a few, made once, serve every case.
static CA_CERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..3)
        .map(|i| {
            NodeCa::generate(&format!("city{i}"))
                .expect("a CA")
                .1
                .cert_pem
        })
        .collect()
});

fn day() -> impl Strategy<Value = Day> {
    // 1970 to 2100: days the calendar code can print and read.
    (0i32..47_482).prop_map(Day::from_days_since_epoch)
}

fn signing_key() -> impl Strategy<Value = SigningKeyEntry> {
    (any::<[u8; 32]>(), day(), proptest::option::of(0i32..400)).prop_map(|(seed, from, span)| {
        let mut entry = SigningKeyEntry::new(&SigningKey::from_bytes(&seed).verifying_key(), from);
        entry.valid_until = span
            .and_then(|days| from.checked_add_days(days))
            .map(|d| d.to_string());
        entry
    })
}

/// A node entry that validates, but with the free-text fields anything a person might type.
fn node_entry(ca: usize) -> impl Strategy<Value = MemberEntry> {
    (
        "[a-z][a-z0-9-]{1,14}[a-z0-9]",
        "[^\\x00-\\x1f]{1,20}".prop_filter("a name is not blank", |n| !n.trim().is_empty()),
        "[0-9A-HJKMNP-TV-Z]{2,5}",
        ("[a-z][a-z0-9.-]{0,20}", 1u16..),
        proptest::collection::vec(signing_key(), 1..3),
        any::<bool>(),
    )
        .prop_map(
            move |(id, name, prefix, (host, port), signing_keys, schedule)| MemberEntry {
                id,
                name,
                kind: MemberKind::Node,
                prefix: Some(prefix),
                endpoint: Some(format!("https://{host}:{port}")),
                ca_cert: CA_CERTS[ca].clone(),
                previous_cas: Vec::new(),
                signing_keys,
                fee_schedule: schedule.then(FeeSchedule::builtin),
                limits: schedule.then(schein_node::roster::Limits::default),
            },
        )
}

/// The last char boundary of `text` at or before `index`.
fn char_boundary(text: &str, index: usize) -> usize {
    (0..=index.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn member_entries_round_trip(entry in node_entry(0)) {
        let member = entry.validate();
        prop_assume!(member.is_ok(), "{:?}", member.err());
        let again = MemberEntry::parse(&entry.to_toml()).unwrap();
        prop_assert_eq!(&again, &entry);
        prop_assert_eq!(again.validate().unwrap().ca_fingerprint, member.unwrap().ca_fingerprint);
    }

    #[test]
    fn rosters_round_trip(a in node_entry(0), b in node_entry(1), funder in any::<bool>()) {
        let mut entries = vec![a, b];
        if funder {
            entries.push(MemberEntry {
                id: "freistaat".into(),
                name: "Freistaat Sachsen".into(),
                kind: MemberKind::Funder,
                prefix: None,
                endpoint: None,
                ca_cert: CA_CERTS[2].clone(),
                previous_cas: Vec::new(),
                signing_keys: vec![],
                fee_schedule: None,
                limits: None,
            });
        }
        let roster = Roster::from_entries(entries.clone());
        // Two generated ids or prefixes may collide: such rosters are refused, rightly.
        prop_assume!(roster.is_ok());
        let again = Roster::parse(&roster.unwrap().to_toml()).unwrap();
        let read: Vec<MemberEntry> = again.members().map(|m| m.entry.clone()).collect();
        prop_assert_eq!(read, entries);
    }

    #[test]
    fn any_text_is_refused_or_read(text in "\\PC{0,300}") {
        let _ = MemberEntry::parse(&text).map(|e| e.validate());
        let _ = Roster::parse(&text);
    }

    #[test]
    fn damaged_entries_are_refused_or_round_trip(
        entry in node_entry(0),
        at in any::<prop::sample::Index>(),
        cut in 0usize..40,
        insert in "\\PC{0,8}",
    ) {
        let text = entry.to_toml();
        let at = char_boundary(&text, at.index(text.len()));
        let end = char_boundary(&text, at + cut);
        let damaged = format!("{}{insert}{}", &text[..at], &text[end..]);
        if let Ok(read) = MemberEntry::parse(&damaged)
            && read.validate().is_ok()
        {
            prop_assert_eq!(MemberEntry::parse(&read.to_toml()).unwrap(), read);
        }
    }
}
