//! Books of a pair with many settled claims, for the clearing benchmark and the clearing test at
//! scale: Dresden's claims on one uncapped Leipzig voucher in 2025-Q1, written into both stores
//! (stopped) through the store's own `settle`, `submit_claim` and `finish_claim`, flushed once.
//! Filling them through the RPCs would take minutes; what they then test (the close) is real.

use std::path::Path;

use ed25519_dalek::SigningKey;
use futures::future::join_all;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{Category, ClaimRecord, Outcome, Receipt, SettlementRecord};
use schein_proto::voucher::new_body;
use schein_proto::{Day, Serial, SignedVoucher};
use sha2::Digest;

use crate::store::{Ceilings, ClaimKey, NewClaim, Outgoing, Store};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Claims written at once.
const BATCH: usize = 256;

/// Writes `n` claims into Leipzig's store in `leipzig_data` (settled, signed with
/// `leipzig_key`) and Dresden's in `dresden_data` (stored and finished with those receipts).
pub async fn settled_pair(
    leipzig_data: &Path,
    dresden_data: &Path,
    leipzig_key: &SigningKey,
    n: usize,
) -> Result<(), Error> {
    leipzig_books(leipzig_data, leipzig_key, n).await?;
    dresden_books(dresden_data, leipzig_key, n).await
}

fn day(text: &str) -> Result<Day, Error> {
    Ok(Day::parse(text)?)
}

/// The claim id of claim `i`.
pub fn claim_id(i: usize) -> String {
    format!("dresden-{i:07}")
}

/// The amount of claim `i`, euro cents.
pub fn cents(i: usize) -> i64 {
    100 + (i % 977) as i64
}

/// Leipzig's side: one uncapped voucher valid in the quarter and `n` of Dresden's claims on it,
/// settled.
async fn leipzig_books(data: &Path, key: &SigningKey, n: usize) -> Result<(), Error> {
    let store = Store::open_for_bulk_load(data)?;
    let body = new_body(
        "leipzig",
        Serial::random(),
        &key.verifying_key(),
        day("2025-01-01")?,
        day("2025-03-31")?,
        &[],
        None,
    );
    let voucher = SignedVoucher::sign(&body, key);
    let accepted = day("2025-02-15")?;
    store.issue(&voucher, day("2025-01-02")?).await?;
    let serial = voucher.decode_own()?.serial;
    let hash = sha2::Sha256::digest(voucher.to_bytes()).to_vec();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(BATCH) {
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
                accepted_on: Some(accepted.into()),
                ..Default::default()
            };
            let store = &store;
            let key = key.clone();
            async move {
                store
                    .settle(
                        "leipzig",
                        &record,
                        accepted,
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
            let receipt: Receipt = signed::peek(&receipt?)?;
            if receipt.outcome() != Outcome::Accepted {
                return Err(format!("a claim was not accepted: {receipt:?}").into());
            }
        }
    }
    store.flush().await?;
    Ok(())
}

/// Dresden's side: the same claims, stored and settled with Leipzig's receipts.
async fn dresden_books(data: &Path, key: &SigningKey, n: usize) -> Result<(), Error> {
    let store = Store::open_for_bulk_load(data)?;
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(BATCH) {
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
            stored?;
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
            finished?;
        }
    }
    store.flush().await?;
    Ok(())
}
