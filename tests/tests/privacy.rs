//! Privacy rule 5: logs name serials only shortened. Runs a whole flow with every log level on,
//! captures what the nodes log, and looks for any full serial, short code or full code in it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use schein_proto::code::VoucherCode;
use schein_proto::v1::{RevocationReason, RevokeVoucherRequest};
use schein_tests::{Saxony, issue, verify};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_hold_a_whole_serial() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace,h2=info,hyper=info,tower=info,rustls=info,sled=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        let voucher = issue(&mut office, &[]).await.unwrap();
        verify(&mut provider, &voucher.full_code).await.unwrap();
        verify(&mut provider, &voucher.short_code).await.unwrap();
        codes.push(voucher);
    }
    office
        .revoke_voucher(RevokeVoucherRequest {
            code: codes[0].short_code.clone(),
            reason: RevocationReason::Lost as i32,
        })
        .await
        .unwrap();
    verify(&mut provider, &codes[0].short_code).await.unwrap();
    saxony.federation.stop("leipzig").await.unwrap();
    verify(&mut provider, &codes[1].full_code).await.unwrap();
    saxony.shutdown().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("voucher issued"), "the flow was logged");
    for voucher in &codes {
        let VoucherCode::Short(short) = VoucherCode::parse(&voucher.short_code).unwrap() else {
            panic!("not a short code")
        };
        let serial_text: String = voucher.short_code.split('-').skip(1).take(4).collect();
        assert_eq!(serial_text.len(), 16);
        for secret in [
            serial_text.as_str(),
            &serial_text[..8],
            &voucher.short_code,
            &voucher.full_code[10..60],
        ] {
            assert!(!logs.contains(secret), "logs contain '{secret}'");
        }
        assert!(
            logs.contains(&short.serial().short()),
            "serials appear shortened"
        );
    }
}

/// Privacy rule 3: the issuer receives and stores only claim id, serial, amount, category,
/// service month and redeeming node. Reads everything Leipzig stored after Dresden's claims.
#[tokio::test]
async fn the_issuer_learns_nothing_of_provider_items_or_day() {
    use schein_proto::v1::{Category, ClaimState, Receipt};
    use schein_tests::claim_request;

    let mut saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut office, &[]).await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis-geheim").await.unwrap();
    let claim = provider
        .submit_claim(claim_request(
            "visit-geheim-1",
            &voucher.full_code,
            &[("GOAE-1", 1, 466), ("GOAE-250", 1, 233)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    saxony.federation.stop("leipzig").await.unwrap();

    let data = saxony.federation.node("leipzig").unwrap().dir.join("data");
    let db = sled::open(&data).unwrap();
    let mut everything = Vec::new();
    let mut receipts = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            everything.extend_from_slice(&key);
            everything.extend_from_slice(&value);
            if name.as_ref() == b"settlements" {
                receipts.push(schein_proto::signed::peek::<Receipt>(&value).unwrap());
            }
        }
    }
    drop(db);
    for secret in [
        "praxis-geheim",
        "visit-geheim-1",
        "GOAE-1",
        "GOAE-250",
        "dresden/",
    ] {
        assert!(
            !everything
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "Leipzig stored '{secret}'"
        );
    }
    assert_eq!(receipts.len(), 1);
    let receipt = &receipts[0];
    let month = schein_proto::Day::today().month().unwrap();
    assert_eq!(receipt.service_month, month, "the month, not the day");
    assert_eq!(
        (receipt.amount_cents, receipt.redeemer.as_str()),
        (699, "dresden")
    );
    assert_ne!(
        receipt.claim_id, "visit-geheim-1",
        "the provider's own claim id stays at Dresden"
    );
    saxony.shutdown().await.unwrap();
}
