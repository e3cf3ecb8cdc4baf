//! Member entries and roster files, as operators hand them to each other.
//!
//! The first byte picks the form of the rest (UTF-8 TOML): a member entry (`member.toml`) or a
//! roster file (`[[member]]` tables). Parsing and validation never panic. An entry that parses
//! and validates, written out and read again, is the same entry and validates again with the
//! same fingerprint; likewise a roster keeps its members, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schein_node::roster::{MemberEntry, Roster};

fn entry(text: &str) {
    let Ok(entry) = MemberEntry::parse(text) else {
        return;
    };
    let Ok(member) = entry.validate() else {
        return;
    };
    let written = entry.to_toml();
    let again = MemberEntry::parse(&written).expect("a written entry reads back");
    assert_eq!(again, entry);
    let revalidated = again.validate().expect("a read-back entry validates");
    assert_eq!(revalidated.ca_fingerprint, member.ca_fingerprint);
}

fn roster(text: &str) {
    let Ok(roster) = Roster::parse(text) else {
        return;
    };
    let written = roster.to_toml();
    let again = Roster::parse(&written).expect("a written roster reads back");
    let ids = |r: &Roster| {
        r.members()
            .map(|m| m.entry.clone())
            .collect::<Vec<MemberEntry>>()
    };
    assert_eq!(ids(&again), ids(&roster));
    for member in roster.members() {
        let by_id = again
            .member(member.id())
            .expect("every member is found by id");
        assert_eq!(by_id.ca_fingerprint, member.ca_fingerprint);
        if let Some(prefix) = &member.entry.prefix {
            assert_eq!(
                again.member_by_prefix(prefix).map(|m| m.id()),
                Some(member.id())
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        entry(text);
    } else {
        roster(text);
    }
});
