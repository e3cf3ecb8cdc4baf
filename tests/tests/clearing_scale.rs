//! Clearing at full scale: a pair of nodes with 10,500 settled claims in one quarter clears
//! over real mTLS with real sled. The claims are written into both stores through the store's
//! own methods while the two nodes are stopped (10,500 claims through the RPCs would take
//! minutes here); the close itself is the real one: Dresden's office closes the quarter,
//! Leipzig answers with the first page of its signed statement, Dresden asks for the rest page by
//! page and compares each with its own books as it comes. More than one page: the statement's
//! paging is part of what is tested. A claim whose amount Leipzig states differently is found.

use futures::future::join_all;
use prost::Message;
use schein_node::domain::settle::Ceilings;
use schein_node::store::{ClaimKey, NewClaim, Outgoing, Store};
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{
    Category, ClaimRecord, ClearingRequest, ClearingState, Outcome, Receipt, SettlementRecord,
};
use schein_proto::voucher::new_body;
use schein_proto::{Day, Serial, SignedVoucher};
use schein_tests::Saxony;
use sha2::Digest;

const CLAIMS: usize = 10_500;
const PERIOD: &str = "2025-Q1";

fn day(text: &str) -> Day {
    Day::parse(text).expect("a day")
}

fn claim_id(i: usize) -> String {
    format!("dresden-{i:06}")
}

fn cents(i: usize) -> i64 {
    100 + (i % 977) as i64
}

/// Leipzig's books: one uncapped voucher valid in the quarter, and Dresden's claims on it
/// settled, as its Settle would have decided them.
async fn leipzig_books(data: &std::path::Path, key: &ed25519_dalek::SigningKey) {
    let store = Store::open_for_bulk_load(data).expect("Leipzig's store");
    let body = new_body(
        "leipzig",
        Serial::random(),
        &key.verifying_key(),
        day("2025-01-01"),
        day("2025-03-31"),
        &[],
        None,
    );
    let voucher = SignedVoucher::sign(&body, key);
    store
        .issue(&voucher, day("2025-01-02"))
        .await
        .expect("issued");
    let serial = voucher.decode_own().expect("own").serial;
    let hash = sha2::Sha256::digest(voucher.to_bytes()).to_vec();
    let ids: Vec<usize> = (0..CLAIMS).collect();
    for chunk in ids.chunks(256) {
        let settled = chunk.iter().map(|&i| {
            let record = SettlementRecord {
                claim_id: claim_id(i),
                serial: serial.as_bytes().to_vec(),
                issuer: "leipzig".into(),
                amount_cents: cents(i),
                category: Category::Treatment as i32,
                service_month: 202_502,
                redeemer: "dresden".into(),
                voucher_hash: hash.clone(),
                accepted_on: Some(day("2025-02-15").into()),
                ..Default::default()
            };
            let store = &store;
            let key = key.clone();
            async move {
                store
                    .settle(
                        "leipzig",
                        &record,
                        day("2025-02-15"),
                        Ceilings {
                            medication_per_voucher_cents: 50_000,
                            per_claim_cents: 250_000,
                        },
                        move |r: &Receipt| signed::seal(Kind::Receipt, r, &key),
                    )
                    .await
            }
        });
        for receipt in join_all(settled).await {
            let receipt: Receipt = signed::peek(&receipt.expect("settled")).expect("a receipt");
            assert_eq!(receipt.outcome(), Outcome::Accepted, "{receipt:?}");
        }
    }
    store.flush().await.expect("flushed");
}

/// Dresden's books: the same claims, stored and settled with Leipzig's receipts.
async fn dresden_books(data: &std::path::Path, key: &ed25519_dalek::SigningKey) {
    let store = Store::open_for_bulk_load(data).expect("Dresden's store");
    let ids: Vec<usize> = (0..CLAIMS).collect();
    for chunk in ids.chunks(256) {
        let stored = chunk.iter().map(|&i| {
            store.submit_claim(NewClaim {
                key: ClaimKey::new("praxis", &format!("k{i}")),
                record: ClaimRecord {
                    claim_id: format!("k{i}"),
                    issuer: "leipzig".into(),
                    amount_cents: cents(i),
                    provider: "praxis".into(),
                    ..Default::default()
                },
                settlement_id: claim_id(i),
                settlement: Outgoing::Signed(Vec::new()),
                fingerprint: i.to_be_bytes().to_vec(),
                duplicate_keys: Vec::new(),
            })
        });
        for stored in join_all(stored).await {
            stored.expect("stored");
        }
        let finished = chunk.iter().map(|&i| {
            let receipt = Receipt {
                claim_id: claim_id(i),
                issuer: "leipzig".into(),
                redeemer: "dresden".into(),
                amount_cents: cents(i),
                category: Category::Treatment as i32,
                service_month: 202_502,
                outcome: Outcome::Accepted as i32,
                ..Default::default()
            };
            let signed_receipt = signed::seal(Kind::Receipt, &receipt, key);
            let store = &store;
            async move {
                store
                    .finish_claim(
                        &ClaimKey::new("praxis", &format!("k{i}")),
                        &signed_receipt,
                        &receipt,
                        "Settled.".into(),
                    )
                    .await
            }
        });
        for finished in join_all(finished).await {
            finished.expect("receipt recorded");
        }
    }
    store.flush().await.expect("flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_with_ten_thousand_claims_in_one_quarter_clears() {
    let mut saxony = Saxony::start().await.expect("Saxony starts");
    let key = saxony.signing_key("leipzig").expect("Leipzig's key");
    for city in ["leipzig", "dresden"] {
        saxony.federation.stop(city).await.expect("stops");
    }
    let data = |city: &str| {
        saxony
            .federation
            .node(city)
            .expect("the city")
            .dir
            .join("data")
    };
    leipzig_books(&data("leipzig"), &key).await;
    dresden_books(&data("dresden"), &key).await;
    // One claim that Leipzig's books hold with another amount: the close must name it.
    let differing = claim_id(7_777);
    {
        let db = sled::open(data("leipzig")).expect("Leipzig's store");
        let index = db.open_tree("clearing_index").expect("the clearing index");
        let mut entry = b"Ldresden".to_vec();
        entry.push(0);
        entry.extend_from_slice(PERIOD.as_bytes());
        entry.push(0);
        entry.extend_from_slice(differing.as_bytes());
        index
            .insert(entry, &(cents(7_777) + 1).to_be_bytes()[..])
            .expect("changed");
        db.flush().expect("flushed");
    }
    for city in ["leipzig", "dresden"] {
        saxony.federation.restart(city).await.expect("starts again");
    }

    let mut office = saxony.office("dresden").await.expect("Dresden's office");
    let result = office
        .close_clearing(ClearingRequest {
            period: PERIOD.into(),
        })
        .await
        .expect("the close is answered")
        .into_inner();
    let pair = result
        .pairs
        .iter()
        .find(|p| p.peer == "leipzig")
        .expect("the pair with Leipzig");
    let expected: i64 = (0..CLAIMS).map(cents).sum();
    assert!(pair.reached && pair.closed, "{pair:?}");
    assert_eq!(pair.receivables_cents, expected, "Dresden's own books");
    assert_eq!(
        pair.peer_liabilities_cents,
        expected + 1,
        "every page of Leipzig's statement was read"
    );
    assert_eq!(pair.differing_claim_ids, [differing], "{}", pair.note);
    assert!(!pair.agreed);
    assert!(
        result
            .pairs
            .iter()
            .filter(|p| p.peer != "leipzig")
            .all(|p| p.reached && p.agreed),
        "{result:?}"
    );
    assert_eq!(result.state(), ClearingState::Closed, "{}", result.message);
    assert!(
        result.encoded_len() < 64 * 1024,
        "the result names claims, not all of them"
    );
    saxony.shutdown().await.expect("shut down");
}
