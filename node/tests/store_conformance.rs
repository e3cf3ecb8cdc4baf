//! What any storage backend of a node must do, as tests generic over
//! [`schein_node::store::Backend`]: every change is atomic (a decision, its voucher state, its
//! ledger entry and its report counters together or not at all), repeated changes are
//! idempotent (the same record gets the same receipt byte for byte, the same claim is stored
//! once), acknowledged changes survive a killed process, the cap is exact however many
//! settlements race, the outbox hands out what is due and ends what the issuer refused for good,
//! and the accounts of clearing hold exactly the accepted claims. The sled store runs the suite
//! here; another backend would add its `open`.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use schein_node::domain::report::Measure;
use schein_node::domain::settle::Ceilings;
use schein_node::store::{
    Backend, ClaimKey, Describe, NewClaim, Outgoing, OwnClaim, ReceiptSigner, Side, Store,
    StoreError,
};
use schein_proto::period::Period;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{
    Category, ClaimAmount, ClaimRecord, ClaimState, Outcome, Receipt, RejectReason,
    SettlementRecord,
};
use schein_proto::voucher::new_body;
use schein_proto::{Day, Serial, SignedVoucher};
use sha2::Digest;

/// The sled backend, opened (or created) in `dir`.
fn open_sled(dir: &Path) -> Store {
    Store::open(dir).expect("the store opens")
}

const CEILINGS: Ceilings = Ceilings {
    medication_per_voucher_cents: 50_000,
    per_claim_cents: 250_000,
};

fn day(text: &str) -> Day {
    Day::parse(text).expect("a day")
}

fn today() -> Day {
    day("2026-11-10")
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// A voucher of Leipzig valid in November 2026, with a treatment cap of `cap` cents.
fn voucher(cap: i64) -> SignedVoucher {
    let key = key();
    let body = new_body(
        "leipzig",
        Serial::random(),
        &key.verifying_key(),
        day("2026-11-01"),
        day("2026-12-31"),
        &[],
        Some(cap),
    );
    SignedVoucher::sign(&body, &key)
}

/// Dresden's record of a treatment claim `id` of `cents` on `voucher`.
fn record(voucher: &SignedVoucher, id: &str, cents: i64) -> SettlementRecord {
    SettlementRecord {
        claim_id: id.into(),
        serial: voucher
            .decode_own()
            .expect("own")
            .serial
            .as_bytes()
            .to_vec(),
        issuer: "leipzig".into(),
        amount_cents: cents,
        category: Category::Treatment as i32,
        service_month: today().month().expect("a month"),
        redeemer: "dresden".into(),
        voucher_hash: sha2::Sha256::digest(voucher.to_bytes()).to_vec(),
        accepted_on: Some(today().into()),
        ..Default::default()
    }
}

/// Seals receipts with Leipzig's key, as the node does.
fn signer() -> ReceiptSigner {
    Arc::new(|receipt: &Receipt| signed::seal(Kind::Receipt, receipt, &key()))
}

async fn settle<B: Backend>(store: &B, record: &SettlementRecord) -> Result<Receipt, StoreError> {
    let bytes = store
        .settle("leipzig", record, today(), CEILINGS, signer())
        .await?;
    Ok(signed::peek(&bytes).expect("a receipt"))
}

fn serial_of(voucher: &SignedVoucher) -> Serial {
    voucher.decode_own().expect("own").serial
}

/// A claim of provider "praxis" on a voucher with serial `serial`.
fn new_claim(id: &str, serial: Serial) -> NewClaim {
    NewClaim {
        key: ClaimKey::new("praxis", id),
        record: ClaimRecord {
            claim_id: id.into(),
            issuer: "leipzig".into(),
            amount_cents: 466,
            provider: "praxis".into(),
            ..Default::default()
        },
        settlement_id: format!("s-{id}"),
        settlement: Outgoing::Signed(vec![1, 2, 3]),
        fingerprint: id.as_bytes().to_vec(),
        duplicate_keys: vec![[serial.as_bytes().as_slice(), id.as_bytes()].concat()],
    }
}

/// A decision comes with its voucher state, its ledger entry and its counters; a refused change
/// leaves everything as it was.
async fn changes_are_atomic<B: Backend>(store: B) {
    let voucher = voucher(50_000);
    store.issue(&voucher, today()).await.expect("issued");
    let serial = serial_of(&voucher);
    let settled = Measure::Settled.cell(Period::Month(2026, 11));

    let accepted = settle(&store, &record(&voucher, "a", 30_000))
        .await
        .expect("decided");
    assert_eq!(accepted.outcome(), Outcome::Accepted);
    let rejected = settle(&store, &record(&voucher, "b", 30_000))
        .await
        .expect("decided");
    assert_eq!(rejected.reason(), RejectReason::OverCap);
    let state = |store: &B| {
        (
            store
                .voucher(serial)
                .expect("read")
                .expect("there")
                .claimed_cents,
            store.ledger_head().expect("head").seq,
            store.aggregate(&settled).expect("counter").amount_cents,
        )
    };
    assert_eq!(
        state(&store),
        (30_000, 2, 30_000),
        "each decision with all it changes"
    );

    // Another record under a used claim id is refused and changes nothing.
    let before = state(&store);
    let reused = settle(&store, &record(&voucher, "a", 100)).await;
    assert!(
        matches!(reused, Err(StoreError::ClaimIdReused)),
        "{reused:?}"
    );
    assert_eq!(state(&store), before);
    // So does a receipt for a claim that does not exist.
    let missing = store
        .finish_claim(
            &ClaimKey::new("praxis", "none"),
            &[1],
            &accepted,
            String::new(),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::UnknownClaim)),
        "{missing:?}"
    );
    assert_eq!(state(&store), before);
}

/// The same record gets the same receipt, byte for byte, and is paid once; the same claim is
/// stored once; a receipt recorded twice changes the claim once.
async fn changes_are_idempotent<B: Backend>(store: B) {
    let voucher = voucher(50_000);
    store.issue(&voucher, today()).await.expect("issued");
    let record = record(&voucher, "once", 466);
    let first = store
        .settle("leipzig", &record, today(), CEILINGS, signer())
        .await
        .expect("decided");
    let again = store
        .settle("leipzig", &record, today(), CEILINGS, signer())
        .await
        .expect("decided");
    assert_eq!(first, again);
    assert_eq!(
        store
            .voucher(serial_of(&voucher))
            .expect("read")
            .expect("there")
            .claimed_cents,
        466
    );
    assert_eq!(store.ledger_head().expect("head").seq, 1);

    let claim = new_claim("c1", serial_of(&voucher));
    let (stored, created) = store.submit_claim(claim.clone()).await.expect("stored");
    assert!(created);
    assert_eq!(stored.state(), ClaimState::Pending);
    let (again, created) = store.submit_claim(claim.clone()).await.expect("stored");
    assert!(!created);
    assert_eq!(again, stored);
    let receipt: Receipt = signed::peek(&first).expect("a receipt");
    let finished = store
        .finish_claim(&claim.key, &first, &receipt, "settled".into())
        .await
        .expect("recorded");
    assert_eq!(finished.state(), ClaimState::Settled);
    let twice = store
        .finish_claim(&claim.key, &first, &receipt, "settled again".into())
        .await
        .expect("recorded");
    assert_eq!(twice, finished, "a receipt twice changes nothing");
    assert_eq!(
        store.ledger_head().expect("head").seq,
        2,
        "and is entered once"
    );
}

/// A claim on a node's own voucher is decided and its receipt recorded in one change: the
/// claim is settled, both ledger entries are there, and the same record again changes nothing.
async fn an_own_claim_settles_in_one_change<B: Backend>(store: B) {
    let voucher = voucher(50_000);
    store.issue(&voucher, today()).await.expect("issued");
    let claim = new_claim("own", serial_of(&voucher));
    store.submit_claim(claim.clone()).await.expect("stored");
    let mut record = record(&voucher, "s-own", 466);
    record.redeemer = "leipzig".into();
    let describe: Describe = Arc::new(|receipt: &Receipt| format!("{:?}", receipt.outcome()));
    let settle_own = || {
        store.settle_own(
            "leipzig",
            &record,
            today(),
            CEILINGS,
            signer(),
            OwnClaim {
                key: claim.key.clone(),
                describe: describe.clone(),
            },
        )
    };
    let (receipt, settled) = settle_own().await.expect("decided");
    assert_eq!(settled.state(), ClaimState::Settled);
    assert_eq!(settled.message, "Accepted");
    assert_eq!(
        store.claim(&claim.key).expect("read"),
        Some(settled.clone())
    );
    let head = store.ledger_head().expect("head").seq;
    assert_eq!(head, 2, "the decision and the receipt, both entered");
    let again = settle_own().await.expect("decided");
    assert_eq!(
        again,
        (receipt, settled),
        "the same receipt, the claim unchanged"
    );
    assert_eq!(store.ledger_head().expect("head").seq, head);
    assert_eq!(
        store
            .voucher(serial_of(&voucher))
            .expect("read")
            .expect("there")
            .claimed_cents,
        466
    );
}

/// 64 settlements of EUR 1 race on a voucher with a cap of EUR 10: exactly ten are paid.
async fn the_cap_is_exact_under_concurrency<B: Backend>(store: B) {
    let voucher = voucher(1_000);
    store.issue(&voucher, today()).await.expect("issued");
    let racing = (0..64).map(|i| {
        let store = store.clone();
        let record = record(&voucher, &format!("r{i}"), 100);
        tokio::spawn(async move { settle(&store, &record).await.expect("decided") })
    });
    let mut accepted = 0;
    for task in racing {
        let receipt = task.await.expect("no panic");
        if receipt.outcome() == Outcome::Accepted {
            accepted += 1;
        } else {
            assert_eq!(receipt.reason(), RejectReason::OverCap);
        }
    }
    assert_eq!(accepted, 10);
    let stored = store
        .voucher(serial_of(&voucher))
        .expect("read")
        .expect("there");
    assert_eq!(stored.claimed_cents, 1_000);
    assert_eq!(store.ledger_head().expect("head").seq, 64);
}

const CHILD: &str = "SCHEIN_CONFORMANCE_CHILD";

/// Acknowledged changes survive a killed process: this test runs itself again as a child that
/// issues and settles, printing each change the moment it is acknowledged; the parent kills it
/// with SIGKILL as soon as all are printed and opens the store again.
fn acknowledged_changes_survive_a_kill<B: Backend>(open: fn(&Path) -> B, test_name: &str) {
    if let Ok(dir) = std::env::var(CHILD) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let store = open(Path::new(&dir));
            let voucher = voucher(1_000_000);
            store.issue(&voucher, today()).await.expect("issued");
            println!(
                "voucher {}",
                data_encoding::HEXLOWER.encode(&voucher.to_bytes())
            );
            let tasks: Vec<_> = (0..32)
                .map(|i| {
                    let (store, record) = (store.clone(), record(&voucher, &format!("k{i}"), 100));
                    tokio::spawn(async move {
                        settle(&store, &record).await.expect("decided");
                        println!("settled k{i}");
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("no panic");
            }
            // Killed here, with the store open: no drop, no flush on the way out.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        });
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let mut child = std::process::Command::new(std::env::current_exe().expect("the test"))
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("its output");
    let (mut voucher, mut settled) = (None, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        // libtest's "test … ... " may precede the first line without a line break.
        if let Some((_, hex)) = line.split_once("voucher ") {
            let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).expect("hex");
            voucher = Some(SignedVoucher::from_bytes(&bytes).expect("a voucher"));
        } else if line.contains("settled k") {
            settled += 1;
            if settled == 32 {
                break;
            }
        }
    }
    child.kill().expect("killed");
    child.wait().expect("reaped");
    assert_eq!(settled, 32, "the child acknowledged every settlement");
    let voucher = voucher.expect("the child issued a voucher");
    let store = open(dir.path());
    let stored = store
        .voucher(serial_of(&voucher))
        .expect("read")
        .expect("the voucher survived");
    assert_eq!(
        stored.claimed_cents, 3_200,
        "every acknowledged settlement survived"
    );
    assert_eq!(store.ledger_head().expect("head").seq, 32);
    let entries = store.ledger_entries(1, 100).expect("entries");
    assert_eq!(entries.len(), 32);
}

/// The outbox hands out what is due and nothing due later; a record put off is due again at its
/// time; a record the issuer refused for good ends the claim undeliverable, once, and leaves the
/// outbox.
async fn the_outbox_serves_what_is_due_and_ends_refused_records<B: Backend>(store: B) {
    let serial = Serial::random();
    for id in ["a", "b", "c"] {
        store
            .submit_claim(new_claim(id, serial))
            .await
            .expect("stored");
    }
    let due_at = |now: i64| -> Vec<String> {
        let mut ids: Vec<String> = store
            .due_settlements(now, 10)
            .expect("readable")
            .into_iter()
            .map(|d| d.settlement_id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(due_at(1), ["s-a", "s-b", "s-c"]);
    assert_eq!(store.due_settlements(1, 2).expect("readable").len(), 2);
    store.retry_later("s-a", 1, 10_000).expect("put off");
    assert_eq!(due_at(9_999), ["s-b", "s-c"]);
    assert_eq!(due_at(10_000), ["s-a", "s-b", "s-c"]);
    let attempts = store.due_settlements(10_000, 10).expect("readable");
    assert_eq!(
        attempts
            .iter()
            .find(|d| d.settlement_id == "s-a")
            .map(|d| d.attempts),
        Some(1)
    );

    let refused = store
        .refuse_delivery(&ClaimKey::new("praxis", "b"), "the record is not valid")
        .await
        .expect("recorded");
    assert_eq!(refused.state(), ClaimState::Undeliverable);
    assert!(
        refused.message.contains("the record is not valid"),
        "{}",
        refused.message
    );
    assert_eq!(due_at(i64::MAX), ["s-a", "s-c"]);
    assert_eq!(store.undeliverable_count(), 1);
    let again = store
        .refuse_delivery(&ClaimKey::new("praxis", "b"), "another reason")
        .await
        .expect("answered");
    assert_eq!(again, refused, "a claim ends once");
    assert_eq!(store.undeliverable_count(), 1);
    let stored = store
        .claim(&ClaimKey::new("praxis", "b"))
        .expect("readable")
        .expect("there");
    assert_eq!(stored, refused);

    let receipt = Receipt {
        claim_id: "s-c".into(),
        issuer: "leipzig".into(),
        redeemer: "dresden".into(),
        amount_cents: 466,
        service_month: today().month().expect("a month"),
        outcome: Outcome::Accepted as i32,
        ..Default::default()
    };
    store
        .finish_claim(
            &ClaimKey::new("praxis", "c"),
            &signed::seal(Kind::Receipt, &receipt, &key()),
            &receipt,
            "settled".into(),
        )
        .await
        .expect("finished");
    assert_eq!(due_at(i64::MAX), ["s-a"]);
    let received = |period| {
        store
            .account_page(Side::Receivables, "leipzig", period, None, 10)
            .expect("readable")
    };
    assert_eq!(
        received(Period::Month(2026, 11)),
        [ClaimAmount {
            claim_id: "s-c".into(),
            amount_cents: 466
        }]
    );
    assert!(received(Period::Month(2026, 10)).is_empty());
}

/// The accounts of clearing hold exactly the accepted claims, under every period of their
/// service month, in the order of claim ids, page by page; a repeated record changes nothing.
async fn the_accounts_hold_the_accepted_claims<B: Backend>(store: B) {
    let voucher = voucher(50_000);
    store.issue(&voucher, today()).await.expect("issued");
    for (id, cents) in [("c", 30_000), ("b", 30_000), ("a", 100)] {
        settle(&store, &record(&voucher, id, cents))
            .await
            .expect("decided");
    }
    let owed = |period, after: Option<&str>, limit| {
        store
            .account_page(Side::Liabilities, "dresden", period, after, limit)
            .expect("readable")
    };
    let amount = |id: &str, cents| ClaimAmount {
        claim_id: id.into(),
        amount_cents: cents,
    };
    for period in Period::containing(202_611) {
        assert_eq!(
            owed(period, None, 10),
            [amount("a", 100), amount("c", 30_000)],
            "b went over the cap: {period}"
        );
        assert_eq!(
            store
                .account_totals(Side::Liabilities, "dresden", period)
                .expect("readable"),
            (2, 30_100)
        );
    }
    let q4 = Period::Quarter(2026, 4);
    assert_eq!(owed(q4, None, 1), [amount("a", 100)]);
    assert_eq!(owed(q4, Some("a"), 1), [amount("c", 30_000)]);
    assert!(owed(q4, Some("c"), 1).is_empty());
    assert!(owed(Period::Quarter(2026, 3), None, 10).is_empty());
    assert!(
        store
            .account_page(Side::Liabilities, "chemnitz", q4, None, 10)
            .expect("readable")
            .is_empty()
    );
    assert!(
        store
            .account_page(Side::Receivables, "dresden", q4, None, 10)
            .expect("readable")
            .is_empty()
    );
    settle(&store, &record(&voucher, "a", 100))
        .await
        .expect("the same record again");
    assert_eq!(
        store
            .account_totals(Side::Liabilities, "dresden", q4)
            .expect("readable"),
        (2, 30_100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_the_outbox_serves_what_is_due_and_ends_refused_records() {
    let dir = tempfile::tempdir().unwrap();
    the_outbox_serves_what_is_due_and_ends_refused_records(open_sled(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_the_accounts_hold_the_accepted_claims() {
    let dir = tempfile::tempdir().unwrap();
    the_accounts_hold_the_accepted_claims(open_sled(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_changes_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    changes_are_atomic(open_sled(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_changes_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    changes_are_idempotent(open_sled(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_an_own_claim_settles_in_one_change() {
    let dir = tempfile::tempdir().unwrap();
    an_own_claim_settles_in_one_change(open_sled(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_the_cap_is_exact_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    the_cap_is_exact_under_concurrency(open_sled(dir.path())).await;
}

#[test]
fn sled_acknowledged_changes_survive_a_kill() {
    acknowledged_changes_survive_a_kill(open_sled, "sled_acknowledged_changes_survive_a_kill");
}
