//! Privacy rule 5: logs carry no serial and no part of one (a 4-character prefix next to a
//! timestamp already singles a voucher out); debug logs may carry a keyed per-day tag. In a test
//! binary of its own, because it installs the process's global log subscriber. Runs a whole flow
//! with every log level on, captures what the nodes log, and looks for any 4-character piece of
//! any serial, in its text and its hex form, and for short and full codes.

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
    assert!(
        logs.contains("tag="),
        "debug logs correlate a voucher's events by a keyed tag"
    );
    for voucher in &codes {
        let VoucherCode::Short(short) = VoucherCode::parse(&voucher.short_code).unwrap() else {
            panic!("not a short code")
        };
        let serial_text: String = voucher.short_code.split('-').skip(1).take(4).collect();
        assert_eq!(serial_text.len(), 16);
        let serial_hex: String = short
            .serial()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for secret in [voucher.short_code.as_str(), &voucher.full_code[10..60]] {
            assert!(!logs.contains(secret), "logs contain '{secret}'");
        }
        // A piece of four digits only also turns up by chance in a log's times, ports and
        // durations (seen: "9749"); such pieces are left to the hex windows and the whole codes.
        let text_pieces = serial_text
            .as_bytes()
            .windows(4)
            .filter(|piece| !piece.iter().all(u8::is_ascii_digit));
        let hex_pieces = serial_hex.as_bytes().windows(8);
        for piece in text_pieces.chain(hex_pieces) {
            let piece = std::str::from_utf8(piece).unwrap();
            if let Some(at) = logs.find(piece) {
                let line = logs[..at].rfind('\n').map_or(0, |start| start + 1);
                let end = logs[at..].find('\n').map_or(logs.len(), |end| at + end);
                panic!(
                    "logs contain '{piece}', a piece of a serial, in: {}",
                    &logs[line..end]
                );
            }
        }
    }
}
