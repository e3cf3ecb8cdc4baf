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
        .with_version(1, Some(2))
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
    let older = held.clone().with_version(0, Some(2)).unwrap();
    let older = signed_by(&older, &[&cities[0], &cities[1], &cities[2]]);
    assert!(matches!(
        check_next(&held, &older, today()),
        Err(QuorumError::Rollback { .. })
    ));
    let skip = held.clone().with_version(3, Some(1)).unwrap();
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
    )
    .unwrap();
    let signed = signed_by(&next, &[&cities[0], &cities[1], &zwickau]);
    assert_eq!(history.adopt(&signed, &roster_path).unwrap(), 2);
    assert_eq!(history.latest(), Some(2));
    assert_eq!(history.since(1, 16), vec![signed.clone()]);
    assert!(history.since(2, 16).is_empty());
    let on_disk = Roster::load(&roster_path).unwrap();
    assert_eq!(on_disk.version(), 2);
    assert_eq!(std::fs::read_to_string(&roster_path).unwrap(), signed.body);
    let proto = SignedRoster::from_proto(signed.to_proto());
    assert_eq!(proto, signed);
}
