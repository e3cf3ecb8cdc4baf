//! Report benchmark: fills a node's store with 10^3, 10^5 and 10^6 settled claims (through the
//! real `issue` and `settle` paths, signatures included, flushing once at the end instead of
//! after each claim) and times `report::build` at each size. Reports read aggregate cells, so
//! the time must not grow with the number of records. Run: `cargo bench -p schein-node --bench
//! report` (add `-- 1000 100000` to choose the sizes).

use std::time::Instant;

use schein_node::domain::report::Figures;
use schein_node::node::Node;
use schein_node::store::Store;
use schein_proto::v1::{Category, SettlementRecord};
use schein_proto::{Day, KeyId};
use sha2::Digest;

mod common;

const CLAIMS_PER_VOUCHER: u64 = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), common::Error> {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    println!("report benchmark: one node, claims spread over 3 redeeming cities, current quarter");
    println!(
        "{:>10} {:>12} {:>14} {:>16} {:>10}",
        "claims", "fill (s)", "fill (claims/s)", "report p50 (µs)", "ratio"
    );
    let mut baseline = None;
    for size in sizes {
        let dir = tempfile::tempdir()?;
        let (_, config) = common::lone_node(dir.path())?;
        let store = Store::open_for_bulk_load(&config.data_dir)?;
        let key_id = KeyId::of(&config.signing_key.verifying_key()).0;
        let sign = std::sync::Arc::new(common::receipt_signer(&config.signing_key));
        let today = Day::today();
        let month = today.month().unwrap_or_default();

        let fill = Instant::now();
        let vouchers = size.div_ceil(CLAIMS_PER_VOUCHER);
        for v in 0..vouchers {
            let voucher = common::voucher(&config, today, today, 1_000_000);
            store.issue(&voucher, today).await?;
            let serial = voucher.decode_own()?.serial;
            let hash = sha2::Sha256::digest(voucher.to_bytes()).to_vec();
            for c in 0..CLAIMS_PER_VOUCHER.min(size - v * CLAIMS_PER_VOUCHER) {
                let record = SettlementRecord {
                    claim_id: format!("{v}-{c}"),
                    serial: serial.as_bytes().to_vec(),
                    issuer: "leipzig".into(),
                    amount_cents: 466,
                    category: Category::Treatment as i32,
                    service_month: month,
                    redeemer: ["leipzig", "dresden", "chemnitz"][(c % 3) as usize].into(),
                    key_id: key_id.clone(),
                    voucher_hash: hash.clone(),
                    accepted_on: Some(today.into()),
                    served_before_revocation: false,
                };
                store
                    .settle("leipzig", &record, today, common::CEILINGS, {
                        let sign = sign.clone();
                        move |r| sign(r)
                    })
                    .await?;
            }
        }
        store.flush().await?;
        let fill_seconds = fill.elapsed().as_secs_f64();

        let revocations =
            schein_node::revocation::Revocations::load(config.node_id(), &config.base_dir)?;
        let node = Node::new(&config, store, revocations);
        let period = schein_proto::period::Period::containing(month)[1];
        let mut times = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            let report = schein_node::domain::report::build(&node, period, today, Figures::Live)?;
            times.push(start.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(report);
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let ratio = p50 / *baseline.get_or_insert(p50);
        println!(
            "{size:>10} {fill_seconds:>12.1} {:>14.0} {p50:>16.1} {ratio:>10.2}",
            size as f64 / fill_seconds
        );
    }
    println!("ratio: report time at this size over the time at the smallest size (flat = 1.0)");
    Ok(())
}
