use ed25519_dalek::SigningKey as Secret;

use super::*;
use crate::pki::NodeCa;
use crate::roster::SigningKeyEntry;

struct City {
    entry: MemberEntry,
    key: Secret,
}

fn city(id: &str, prefix: &str, seed: u8) -> City {
    let (_, ca) = NodeCa::generate(id).unwrap();
    let key = Secret::from_bytes(&[seed; 32]);
    City {
        entry: MemberEntry {
            id: id.into(),
            name: id.to_uppercase(),
            kind: MemberKind::Node,
            prefix: Some(prefix.into()),
            endpoint: Some("https://127.0.0.1:7443".into()),
            ca_cert: ca.cert_pem,
            previous_cas: Vec::new(),
            signing_keys: vec![SigningKeyEntry::new(
                &key.verifying_key(),
                Day::parse("2026-01-01").unwrap(),
            )],
            fee_schedule: None,
            limits: None,
        },
        key,
    }
}

fn today() -> Day {
    Day::parse("2026-11-30").unwrap()
}

/// Leipzig, Dresden and Chemnitz at version 1, threshold 2; Zwickau outside.
fn saxony() -> (Roster, Vec<City>, City) {
    let cities = vec![
        city("leipzig", "LEJ", 1),
        city("dresden", "DRS", 2),
        city("chemnitz", "CHE", 3),
    ];
    let roster = Roster::from_entries(cities.iter().map(|c| c.entry.clone()).collect())
        .unwrap()
        .with_version(1, Some(2), Day::parse("2026-11-01").unwrap(), None)
        .unwrap();
    (roster, cities, city("zwickau", "ZWI", 4))
}

fn signed_by(roster: &Roster, signers: &[&City]) -> SignedRoster {
    let mut signed = SignedRoster::new(roster);
    for city in signers {
        signed.sign(&city.entry.id, &city.key);
    }
    signed
}

#[test]
fn a_join_needs_the_threshold_and_the_new_city() {
    let (held, cities, zwickau) = saxony();
    let next = propose(
        &held,
        &Edits {
            add: vec![zwickau.entry.clone()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    assert_eq!(next.version(), 2);
    let one = signed_by(&next, &[&cities[0], &zwickau]);
    assert!(matches!(
        check_next(&held, &one, today()),
        Err(QuorumError::TooFew {
            have: 1,
            need: 2,
            ..
        })
    ));
    let without_new = signed_by(&next, &[&cities[0], &cities[1]]);
    assert!(matches!(
        check_next(&held, &without_new, today()),
        Err(QuorumError::NewMemberUnsigned(id)) if id == "zwickau"
    ));
    let enough = signed_by(&next, &[&cities[0], &cities[1], &zwickau]);
    let adopted = check_next(&held, &enough, today()).unwrap();
    assert!(adopted.member("zwickau").is_some());
    let tally = tally(&held, &enough, today()).unwrap();
    assert!(
        tally
            .changes
            .iter()
            .any(|c| matches!(c, Change::Join { id, .. } if id == "zwickau"))
    );
    assert!(describe(&held, &tally).contains("JOIN  zwickau"));
}

#[test]
fn foreign_forged_and_stale_signatures_refuse_the_version() {
    let (held, cities, zwickau) = saxony();
    let next = propose(
        &held,
        &Edits {
            remove: vec!["chemnitz".into()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let foreign = signed_by(&next, &[&cities[0], &cities[1], &zwickau]);
    assert!(matches!(
        check_next(&held, &foreign, today()),
        Err(QuorumError::ForeignSignature(id)) if id == "zwickau"
    ));
    let mut forged = signed_by(&next, &[&cities[0], &cities[1]]);
    forged.body.push_str("\n# one more line\n");
    assert!(matches!(
        check_next(&held, &forged, today()),
        Err(QuorumError::BadSignature(_))
    ));
    let mut wrong_key = signed_by(&next, &[&cities[0]]);
    wrong_key.sign("dresden", &cities[2].key);
    assert!(matches!(
        check_next(&held, &wrong_key, today()),
        Err(QuorumError::BadSignature(id)) if id == "dresden"
    ));
    let good = signed_by(&next, &[&cities[0], &cities[1]]);
    let adopted = check_next(&held, &good, today()).unwrap();
    assert!(adopted.member("chemnitz").is_none());
    assert_eq!(adopted.threshold(), 2);
}

#[test]
fn versions_only_go_forward_one_at_a_time() {
    let (held, cities, _) = saxony();
    let same = signed_by(&held, &[&cities[0], &cities[1], &cities[2]]);
    assert!(matches!(
        check_next(&held, &same, today()),
        Err(QuorumError::Rollback {
            held: 1,
            offered: 1
        })
    ));
    let older = held.with_version(0, Some(2), today(), None).unwrap();
    let older = signed_by(&older, &[&cities[0], &cities[1], &cities[2]]);
    assert!(matches!(
        check_next(&held, &older, today()),
        Err(QuorumError::Rollback { .. })
    ));
    let skip = held
        .with_version(3, Some(1), today(), held.text_hash())
        .unwrap();
    let skip = signed_by(&skip, &[&cities[0], &cities[1], &cities[2]]);
    assert!(matches!(
        check_next(&held, &skip, today()),
        Err(QuorumError::NotNext {
            held: 1,
            offered: 3
        })
    ));
}

#[test]
fn a_routine_rotation_is_signed_by_its_owner_and_a_compromise_by_the_quorum() {
    let (held, cities, _) = saxony();
    let next_key = Secret::from_bytes(&[42; 32]);
    let mut entry = cities[0].entry.clone();
    entry.signing_keys[0].valid_until = Some(today().to_string());
    entry
        .signing_keys
        .push(SigningKeyEntry::new(&next_key.verifying_key(), today()));
    let rotated = propose(
        &held,
        &Edits {
            replace: vec![entry.clone()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let own = signed_by(&rotated, &[&cities[0]]);
    assert_eq!(
        tally(&held, &own, today()).unwrap().needed,
        Needed::Owner("leipzig".into())
    );
    let adopted = check_next(&held, &own, today()).unwrap();
    assert_eq!(
        adopted
            .member("leipzig")
            .unwrap()
            .signing_key_on(Day::parse("2026-12-01").unwrap())
            .unwrap()
            .public_key,
        next_key.verifying_key()
    );
    let by_other = signed_by(&rotated, &[&cities[1]]);
    assert!(matches!(
        check_next(&held, &by_other, today()),
        Err(QuorumError::OwnerUnsigned(_))
    ));

    // Closing a window in the past would void vouchers already issued: not routine.
    let mut backdated = cities[0].entry.clone();
    backdated.signing_keys[0].valid_until = Some("2026-06-30".into());
    backdated
        .signing_keys
        .push(SigningKeyEntry::new(&next_key.verifying_key(), today()));
    let backdated = propose(
        &held,
        &Edits {
            replace: vec![backdated],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    assert!(matches!(
        check_next(&held, &signed_by(&backdated, &[&cities[0]]), today()),
        Err(QuorumError::TooFew { .. })
    ));

    let key_id = cities[0].entry.signing_keys[0].key_id.clone();
    let compromise = propose(
        &held,
        &Edits {
            compromised: vec![("leipzig".into(), key_id, today())],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    assert!(matches!(
        check_next(&held, &signed_by(&compromise, &[&cities[0]]), today()),
        Err(QuorumError::TooFew {
            have: 1,
            need: 2,
            ..
        })
    ));
    let declared = check_next(
        &held,
        &signed_by(&compromise, &[&cities[1], &cities[2]]),
        today(),
    )
    .unwrap();
    assert!(
        declared
            .member("leipzig")
            .unwrap()
            .signing_key_on(Day::parse("2026-12-01").unwrap())
            .is_none()
    );
}

#[test]
fn a_joining_city_takes_its_first_roster_on_the_members_signatures() {
    let (held, cities, zwickau) = saxony();
    let next = propose(
        &held,
        &Edits {
            add: vec![zwickau.entry.clone()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let signed = signed_by(&next, &[&cities[0], &cities[1], &zwickau]);
    assert!(check_first(&zwickau.entry, &signed, today()).is_ok());
    let only_itself = signed_by(&next, &[&zwickau]);
    assert!(matches!(
        check_first(&zwickau.entry, &only_itself, today()),
        Err(QuorumError::TooFew { .. })
    ));
    let other = city("plauen", "PLA", 5);
    assert!(matches!(
        check_first(&other.entry, &signed, today()),
        Err(QuorumError::NotOurs(_))
    ));
}

#[test]
fn the_history_keeps_versions_and_serves_those_after_one() {
    let (held, cities, zwickau) = saxony();
    let dir = tempfile::tempdir().unwrap();
    let roster_path = dir.path().join("roster.toml");
    let history = History::beside(&roster_path);
    assert_eq!(history.latest(), None);
    let next = propose(
        &held,
        &Edits {
            add: vec![zwickau.entry.clone()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let signed = signed_by(&next, &[&cities[0], &cities[1], &zwickau]);
    held.save(&roster_path).unwrap();
    assert_eq!(history.adopt(1, &signed, &roster_path).unwrap(), 2);
    assert_eq!(
        history.adopt(1, &signed, &roster_path).unwrap(),
        2,
        "the very same version again changes nothing"
    );
    let other = propose(
        &held,
        &Edits {
            remove: vec!["chemnitz".into()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let other = signed_by(&other, &[&cities[0], &cities[1]]);
    assert!(
        matches!(
            history.adopt(1, &other, &roster_path),
            Err(QuorumError::Changed(2))
        ),
        "a second version 2 is never kept"
    );
    assert_eq!(history.latest(), Some(2));
    assert_eq!(history.since(1, 16), vec![signed.clone()]);
    assert!(history.since(2, 16).is_empty());
    let on_disk = Roster::load(&roster_path).unwrap();
    assert_eq!(on_disk.version(), 2);
    assert_eq!(std::fs::read_to_string(&roster_path).unwrap(), signed.body);
    let proto = SignedRoster::from_proto(signed.to_proto());
    assert_eq!(proto, signed);
}

fn rotation_of(held: &Roster, city: &City, next_key: &Secret, made_on: Day) -> Roster {
    let mut entry = held.member(&city.entry.id).unwrap().entry.clone();
    for key in &mut entry.signing_keys {
        if key.valid_until.is_none() {
            key.valid_until = Some(made_on.to_string());
        }
    }
    entry
        .signing_keys
        .push(SigningKeyEntry::new(&next_key.verifying_key(), made_on));
    propose(
        held,
        &Edits {
            replace: vec![entry],
            ..Default::default()
        },
        made_on,
    )
    .unwrap()
}

#[test]
fn a_rotation_is_judged_by_the_day_it_was_made_not_the_day_it_arrives() {
    let (held, cities, _) = saxony();
    let next_key = Secret::from_bytes(&[42; 32]);
    let rotated = rotation_of(&held, &cities[0], &next_key, today());
    let signed = signed_by(&rotated, &[&cities[0]]);
    let two_days_later = Day::parse("2026-12-02").unwrap();
    assert!(check_next(&held, &signed, two_days_later).is_ok());
    let far_ahead = held
        .with_version(
            2,
            Some(2),
            Day::parse("2027-01-01").unwrap(),
            held.text_hash(),
        )
        .unwrap();
    assert!(matches!(
        check_next(
            &held,
            &signed_by(&far_ahead, &cities.iter().collect::<Vec<_>>()),
            today()
        ),
        Err(QuorumError::MadeOn(_))
    ));
    let before_held = held
        .with_version(
            2,
            Some(2),
            Day::parse("2026-10-01").unwrap(),
            held.text_hash(),
        )
        .unwrap();
    assert!(matches!(
        check_next(
            &held,
            &signed_by(&before_held, &cities.iter().collect::<Vec<_>>()),
            today()
        ),
        Err(QuorumError::MadeOn(_))
    ));
}

#[test]
fn one_member_cannot_reopen_revive_or_steal_keys_alone() {
    let (held, cities, _) = saxony();
    let next_key = Secret::from_bytes(&[42; 32]);
    // The quorum declares Leipzig's first key compromised and Leipzig rotates.
    let key_id = cities[0].entry.signing_keys[0].key_id.clone();
    let declared = propose(
        &held,
        &Edits {
            compromised: vec![("leipzig".into(), key_id.clone(), today())],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let held = check_next(
        &held,
        &signed_by(&declared, &[&cities[1], &cities[2]]),
        today(),
    )
    .unwrap();

    // A clean copy of the compromised key listed again: refused as a roster at all.
    let mut revived = held.member("leipzig").unwrap().entry.clone();
    let mut clean = revived.signing_keys[0].clone();
    clean.compromised_from = None;
    clean.valid_from = "2020-01-01".into();
    revived.signing_keys.insert(0, clean);
    assert!(matches!(
        propose(
            &held,
            &Edits {
                replace: vec![revived],
                ..Default::default()
            },
            today(),
        ),
        Err(QuorumError::Invalid(RosterError::DuplicateKey(_)))
    ));

    // Listing Dresden's key as Leipzig's: refused too.
    let mut stolen = held.member("leipzig").unwrap().entry.clone();
    stolen
        .signing_keys
        .push(cities[1].entry.signing_keys[0].clone());
    assert!(matches!(
        propose(
            &held,
            &Edits {
                replace: vec![stolen],
                ..Default::default()
            },
            today(),
        ),
        Err(QuorumError::Invalid(RosterError::DuplicateKey(_)))
    ));

    // A key retired by a rotation cannot sign the next rotation.
    let (fresh, cities, _) = saxony();
    let rotated = rotation_of(&fresh, &cities[0], &next_key, today());
    let held = check_next(&fresh, &signed_by(&rotated, &[&cities[0]]), today()).unwrap();
    let thief = Secret::from_bytes(&[66; 32]);
    let stolen_rotation = rotation_of(&held, &cities[0], &thief, today());
    let by_retired_key = signed_by(&stolen_rotation, &[&cities[0]]);
    assert!(matches!(
        check_next(&held, &by_retired_key, today()),
        Err(QuorumError::OwnerUnsigned(_))
    ));
    let mut by_new_key = SignedRoster::new(&stolen_rotation);
    by_new_key.sign("leipzig", &next_key);
    assert!(check_next(&held, &by_new_key, today()).is_ok());
}

#[test]
fn a_member_signs_once() {
    let (held, cities, _) = saxony();
    let next = propose(
        &held,
        &Edits {
            remove: vec!["chemnitz".into()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let mut twice = signed_by(&next, &[&cities[0]]);
    let again = twice.signatures[0].clone();
    twice.signatures.push(again);
    assert!(matches!(
        check_next(&held, &twice, today()),
        Err(QuorumError::SignedTwice(id)) if id == "leipzig"
    ));
}

#[test]
fn a_version_made_on_another_branch_is_refused_not_merged() {
    let (founding, cities, zwickau) = saxony();
    let all: Vec<&City> = cities.iter().collect();
    // Version 2 as every node holds it: read from its signed text.
    let v1 = propose(
        &founding,
        &Edits {
            threshold: Some(1),
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let held = check_next(&founding, &signed_by(&v1, &all), today()).unwrap();
    assert!(held.text_hash().is_some());
    // The members sign two different versions 3 (threshold 1 lets one member make each).
    let left = propose(
        &held,
        &Edits {
            remove: vec!["chemnitz".into()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let left = check_next(&held, &signed_by(&left, &[&cities[0]]), today()).unwrap();
    let right = propose(
        &held,
        &Edits {
            add: vec![zwickau.entry.clone()],
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let right = check_next(&held, &signed_by(&right, &[&cities[1], &zwickau]), today()).unwrap();
    // A version 4 made on the right branch is refused by a node holding the left one.
    let on_right = propose(
        &right,
        &Edits {
            threshold: Some(2),
            ..Default::default()
        },
        today(),
    )
    .unwrap();
    let on_right = signed_by(&on_right, &[&cities[0], &cities[1]]);
    let refused = check_next(&left, &on_right, today());
    assert!(
        matches!(refused, Err(QuorumError::OtherBranch(4))),
        "{refused:?}"
    );
    assert!(check_next(&right, &on_right, today()).is_ok());
}
