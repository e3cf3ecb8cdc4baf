//! Clearing benchmark: Leipzig and Dresden with N settled claims between them in one quarter
//! (written into both stores through the store's own `settle`, `submit_claim` and
//! `finish_claim`, flushing once at the end), then Dresden's office closes the quarter over real
//! mTLS: Leipzig delivers nothing more, records the close and answers with the first page of its
//! signed statement, Dresden reads the rest page by page and compares each with its own books.
//! Times the whole close at each size; the baseline is the smallest size in the same run, so the
//! ratio per claim shows whether the close stays linear. Run: `cargo bench -p schein-node --bench
//! clearing` (add `-- 1000 100000` to choose the sizes).

use std::time::Instant;

use schein_node::local::books::{self, cents};
use schein_node::local::{LocalFederation, SAXONY};
use schein_proto::v1::ClearingRequest;
use schein_proto::v1::office_client::OfficeClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

const PERIOD: &str = "2025-Q1";

/// Fills a new federation with `n` claims and times Dresden's close: (fill s, close s).
async fn run(n: usize) -> Result<(f64, f64), Error> {
    let dir = tempfile::tempdir()?;
    let mut federation = LocalFederation::create(dir.path(), &SAXONY).await?;
    let key = schein_node::config::read_signing_key(
        &federation.node("leipzig")?.dir.join("keys/signing.key"),
    )?;
    let fill = Instant::now();
    books::settled_pair(
        &federation.node("leipzig")?.config()?.data_dir,
        &federation.node("dresden")?.config()?.data_dir,
        &key,
        n,
    )
    .await?;
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
