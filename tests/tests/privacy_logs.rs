//! Privacy rule 5: logs name serials only shortened. In a test binary of its own, because it
//! installs the process's global log subscriber. Runs a whole flow with every log level on,
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
    // Claims too: one settled, one waiting in the outbox while Leipzig is down.
    let mut practice = saxony.provider("dresden", "praxis-log").await.unwrap();
    for (i, voucher) in codes.iter().enumerate().skip(1) {
        practice
            .submit_claim(schein_tests::claim_request(
                &format!("log-{i}"),
                &voucher.full_code,
                &[("GOAE-1", 1, 466)],
                schein_proto::v1::Category::Treatment,
            ))
            .await
            .unwrap();
    }
    saxony.federation.restart("leipzig").await.unwrap();
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
