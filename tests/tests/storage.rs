//! Durability: what a node stored survives a restart, graceful or not.

use schein_proto::v1::{
    InvalidReason as R, ListVouchersRequest, RevocationReason, RevokeVoucherRequest,
    ShowVoucherRequest, Verdict, VoucherState,
};
use schein_tests::{Saxony, assert_verdict, issue, verify};

#[tokio::test]
async fn a_restarted_node_keeps_its_vouchers_and_revocations() {
    let mut saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let kept = issue(&mut office, &[]).await.unwrap();
    let revoked = issue(&mut office, &[]).await.unwrap();
    office
        .revoke_voucher(RevokeVoucherRequest {
            code: revoked.full_code.clone(),
            reason: RevocationReason::Lost as i32,
        })
        .await
        .unwrap();

    for stop_gracefully in [true, false] {
        if stop_gracefully {
            saxony.federation.stop("leipzig").await.unwrap();
        } else {
            // No drain, no final flush: each issue and revoke was flushed before it answered.
            let mut connected = saxony.office("leipzig").await.unwrap();
            connected
                .list_vouchers(ListVouchersRequest::default())
                .await
                .unwrap();
            saxony.federation.kill("leipzig").await.unwrap();
            // Nothing of the killed node goes on serving, not even open connections.
            let old = connected
                .list_vouchers(ListVouchersRequest::default())
                .await;
            assert!(old.is_err(), "a killed node still answered");
        }
        saxony.federation.restart("leipzig").await.unwrap();

        let mut office = saxony.office("leipzig").await.unwrap();
        let listed = office
            .list_vouchers(ListVouchersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.vouchers.len(), 2);
        let shown = office
            .show_voucher(ShowVoucherRequest {
                code: revoked.short_code.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shown.state(), VoucherState::Revoked);
        assert_eq!(shown.revocation_reason(), RevocationReason::Lost);
        assert_eq!(
            shown.full_code, revoked.full_code,
            "the signed bytes are kept as issued"
        );

        let mut provider = saxony
            .provider("dresden", &format!("praxis-{stop_gracefully}"))
            .await
            .unwrap();
        assert_verdict(
            &verify(&mut provider, &kept.short_code).await.unwrap(),
            Verdict::Valid,
            R::Unspecified,
        );
        assert_verdict(
            &verify(&mut provider, &revoked.short_code).await.unwrap(),
            Verdict::Invalid,
            R::Revoked,
        );
    }
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn listing_pages_through_all_vouchers_newest_first() {
    let saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("chemnitz").await.unwrap();
    let mut issued = Vec::new();
    for _ in 0..7 {
        issued.push(issue(&mut office, &[]).await.unwrap().short_code);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = office
            .list_vouchers(ListVouchersRequest {
                limit: 3,
                page_token: token.clone(),
                state: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.vouchers.len() <= 3);
        seen.extend(page.vouchers.into_iter().map(|v| v.short_code));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Issued within the same second, the order among them is by serial; all are there once.
    let mut expected = issued.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected);
    saxony.shutdown().await.unwrap();
}
