//! Clearing benchmark: Leipzig and Dresden with N settled claims between them in one quarter
//! (written into both stores through the store's own `settle`, `submit_claim` and
//! `finish_claim`, flushing once at the end), then Dresden's office closes the quarter over real
//! mTLS: Leipzig delivers nothing more, records the close and answers with the first page of its
//! signed statement, Dresden reads the rest page by page and compares each with its own books.
//! Times the whole close at each size; the baseline is the smallest size in the same run, so the
//! ratio per claim shows whether the close stays linear. Run: `cargo bench -p schein-node --bench
//! clearing` (add `-- 1000 100000` to choose the sizes).

use std::path::Path;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use futures::future::join_all;
use schein_node::local::{LocalFederation, SAXONY};
use schein_node::store::{Ceilings, ClaimKey, NewClaim, Outgoing, Store};
use schein_proto::signed::{self, Kind};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::{
    Category, ClaimRecord, ClearingRequest, Outcome, Receipt, SettlementRecord,
};
use schein_proto::voucher::new_body;
use schein_proto::{Day, Serial, SignedVoucher};
use sha2::Digest;

type Error = Box<dyn std::error::Error + Send + Sync>;

const PERIOD: &str = "2025-Q1";
const BATCH: usize = 256;

fn day(text: &str) -> Result<Day, Error> {
    Ok(Day::parse(text)?)
}

fn claim_id(i: usize) -> String {
    format!("dresden-{i:07}")
}

fn cents(i: usize) -> i64 {
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

/// Fills a new federation with `n` claims and times Dresden's close: (fill s, close s).
async fn run(n: usize) -> Result<(f64, f64), Error> {
    let dir = tempfile::tempdir()?;
    let mut federation = LocalFederation::create(dir.path(), &SAXONY).await?;
    let key = schein_node::config::read_signing_key(
        &federation.node("leipzig")?.dir.join("keys/signing.key"),
    )?;
    let fill = Instant::now();
    leipzig_books(&federation.node("leipzig")?.config()?.data_dir, &key, n).await?;
    dresden_books(&federation.node("dresden")?.config()?.data_dir, &key, n).await?;
    let fill_seconds = fill.elapsed().as_secs_f64();
    for city in ["leipzig", "dresden", "chemnitz"] {
        federation.restart(city).await?;
    }
    let office = federation.office("dresden")?;
    let mut client = OfficeClient::new(office.connect(None).await?);
    let close = Instant::now();
    let result = client
        .close_clearing(ClearingRequest {
            period: PERIOD.into(),
        })
        .await?
        .into_inner();
    let close_seconds = close.elapsed().as_secs_f64();
    let expected: i64 = (0..n).map(cents).sum();
    let pair = result
        .pairs
        .iter()
        .find(|p| p.peer == "leipzig")
        .ok_or("no pair with Leipzig")?;
    if !(pair.agreed && pair.receivables_cents == expected) {
        return Err(format!("the pair did not clear: {pair:?}").into());
    }
    federation.shutdown().await?;
    Ok((fill_seconds, close_seconds))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "clearing benchmark: Leipzig, Dresden, Chemnitz in one process (tokio, 2 workers), real mTLS and sled; Dresden closes {PERIOD} with N claims between it and Leipzig"
    );
    println!(
        "{:>10} {:>10} {:>10} {:>16} {:>14}",
        "claims", "fill (s)", "close (s)", "close (claims/s)", "µs/claim ratio"
    );
    let mut baseline = None;
    for n in sizes {
        let (fill, close) = run(n).await?;
        let per_claim = close / n as f64;
        let ratio = per_claim / *baseline.get_or_insert(per_claim);
        println!(
            "{n:>10} {fill:>10.1} {close:>10.2} {:>16.0} {ratio:>14.2}",
            n as f64 / close
        );
    }
    println!(
        "ratio: close time per claim over the time per claim at the smallest size (linear = 1.0 or less)"
    );
    Ok(())
}
