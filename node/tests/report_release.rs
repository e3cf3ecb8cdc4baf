//! Funders see figures released weekly (privacy rule 4: the difference between two reports
//! asked for at different times must not show one claim): a node's report read by a funder
//! does not change after a settlement in the same week, and does once the week has ended; its
//! office sees the settlement at once. Real store, real settlements, explicit days.

use prost::Message;
use schein_node::config::Config;
use schein_node::domain::report::{Figures, build};
use schein_node::init::{InitOptions, init};
use schein_node::node::Node;
use schein_node::store::Store;
use schein_proto::period::Period;
use schein_proto::v1::{Category, NodeReport, Receipt, SettlementRecord};
use schein_proto::voucher::new_body;
use schein_proto::{Day, Serial, SignedVoucher};
use sha2::Digest;

fn day(text: &str) -> Day {
    Day::parse(text).expect("a day")
}

/// Leipzig, alone in its roster, not running.
fn leipzig(dir: &std::path::Path) -> Config {
    let created = init(&InitOptions {
        dir: dir.join("leipzig"),
        node_id: "leipzig".into(),
        name: "Leipzig".into(),
        prefix: "LEJ".into(),
        listen: "127.0.0.1:7443".into(),
        endpoint: "https://127.0.0.1:7443".into(),
        web_listen: None,
        hostnames: vec![],
        office_name: "office".into(),
    })
    .expect("init");
    Config::load_with_env(&created.config_path, []).expect("config")
}

struct Books {
    node: Node,
    vouchers: Vec<SignedVoucher>,
}

impl Books {
    async fn settle(&self, claim: &str, voucher: usize, on: &str) {
        let signed = &self.vouchers[voucher];
        let serial = signed.decode_own().expect("own voucher").serial;
        let record = SettlementRecord {
            claim_id: claim.into(),
            serial: serial.as_bytes().to_vec(),
            issuer: "leipzig".into(),
            amount_cents: 4_660,
            category: Category::Treatment as i32,
            service_month: 202_603,
            redeemer: "dresden".into(),
            voucher_hash: sha2::Sha256::digest(signed.to_bytes()).to_vec(),
            ..Default::default()
        };
        let receipt = self
            .node
            .store
            .settle(
                "leipzig",
                &record,
                day(on),
                schein_node::store::Ceilings {
                    medication_per_voucher_cents: 50_000,
                    per_claim_cents: 250_000,
                },
                |r: &Receipt| r.encode_to_vec(),
            )
            .await
            .expect("settle");
        let receipt = Receipt::decode(receipt.as_slice()).expect("receipt");
        assert_eq!(receipt.reason, 0, "{claim} settles");
    }

    fn report(&self, on: &str, figures: Figures) -> NodeReport {
        build(&self.node, Period::Month(2026, 3), day(on), figures).expect("report")
    }
}

fn settled(report: &NodeReport) -> (u64, i64) {
    let cell = report.settled.as_ref().expect("settled");
    assert!(!cell.suppressed, "{report:?}");
    (cell.count, cell.amount_cents)
}

#[tokio::test]
async fn a_funder_sees_a_week_at_once_and_the_office_every_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = leipzig(dir.path());
    let store = Store::open(&config.data_dir).expect("store");
    let key = config.signing_key.clone();
    let mut vouchers = Vec::new();
    for _ in 0..6 {
        let body = new_body(
            "leipzig",
            Serial::random(),
            &key.verifying_key(),
            day("2026-02-01"),
            day("2026-06-30"),
            &[],
            Some(50_000),
        );
        let signed = SignedVoucher::sign(&body, &key);
        store
            .issue(&signed, day("2026-02-24"))
            .await
            .expect("issue");
        vouchers.push(signed);
    }
    let books = Books {
        node: Node::new(
            &config,
            store,
            schein_node::revocation::Revocations::load(config.node_id(), &config.base_dir)
                .expect("the register"),
        ),
        vouchers,
    };
    // Monday 2 March 2026: six claims, one per voucher.
    for v in 0..6 {
        books.settle(&format!("m{v}"), v, "2026-03-02").await;
    }
    let funder_wednesday = books.report("2026-03-04", Figures::Released);
    assert_eq!(
        settled(&funder_wednesday),
        (0, 0),
        "last week had no claims"
    );
    assert_eq!(
        funder_wednesday.released_through,
        Some(day("2026-03-01").into())
    );
    assert!(
        funder_wednesday
            .flows
            .iter()
            .all(|f| f.redeemer != "dresden"),
        "a city outside the roster appears only with released figures"
    );
    let office_wednesday = books.report("2026-03-04", Figures::Live);
    assert_eq!(settled(&office_wednesday), (6, 6 * 4_660));
    assert_eq!(office_wednesday.released_through, None);

    // Thursday: one more claim. The funder's report stays as it was, the office's moves.
    books.settle("t0", 0, "2026-03-05").await;
    assert_eq!(
        books.report("2026-03-06", Figures::Released),
        funder_wednesday
    );
    assert_eq!(
        settled(&books.report("2026-03-06", Figures::Live)),
        (7, 7 * 4_660)
    );

    // The week has ended: the funder sees all of it.
    let funder_monday = books.report("2026-03-09", Figures::Released);
    assert_eq!(settled(&funder_monday), (7, 7 * 4_660));
    assert_eq!(
        funder_monday.released_through,
        Some(day("2026-03-08").into())
    );
    let dresden = funder_monday
        .flows
        .iter()
        .find(|f| f.redeemer == "dresden")
        .and_then(|f| f.cell.as_ref())
        .expect("Dresden's flow once released");
    assert_eq!((dresden.suppressed, dresden.count), (false, 7));
}
