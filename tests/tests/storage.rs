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

    // Graceful restarts here; SIGKILL of a real process is in node/tests/crash.rs (dropping a
    // node inside this process would let sled flush on drop, and prove nothing).
    for round in 0..2 {
        saxony.federation.stop("leipzig").await.unwrap();
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
            .provider("dresden", &format!("praxis-{round}"))
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
    // Seven vouchers in pages of three: three pages; more means the cursor does not advance.
    for _ in 0..4 {
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
    // Newest first: the reverse of the order of issue, each once, across the pages.
    let newest_first: Vec<String> = issued.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    saxony.shutdown().await.unwrap();
}
