//! Clearing finds books that differ, over real mTLS with real sled: a Dresden practice's claims
//! on Leipzig vouchers settle, Leipzig's store is then changed behind its back (a settlement
//! lost, or one whose amount differs from Dresden's), and closing the quarter names exactly the
//! claim that differs (the settlements and the clearing index they are read through change
//! together). After the close, Dresden refuses new claims for the quarter at once.

use schein_proto::error::reason_of;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::{
    Category, ClaimState, ClearingRequest, ClearingResult, ClearingState, ErrorReason,
    PairClearing, Receipt,
};
use schein_tests::{Saxony, claim_request, connect, issue};

/// Three Dresden claims of EUR 4 on three Leipzig vouchers, settled: their receipts.
async fn three_settled_claims(saxony: &Saxony) -> Vec<Receipt> {
    let mut leipzig = saxony.office("leipzig").await.expect("Leipzig's office");
    let mut practice = saxony
        .provider("dresden", "praxis")
        .await
        .expect("a Dresden practice");
    let mut receipts = Vec::new();
    for (i, fee) in ["GOAE-1", "GOAE-3", "GOAE-5"].into_iter().enumerate() {
        let voucher = issue(&mut leipzig, &[]).await.expect("a voucher");
        let claim = practice
            .submit_claim(claim_request(
                &format!("k{i}"),
                &voucher.full_code,
                &[(fee, 1, 400)],
                Category::Treatment,
            ))
            .await
            .expect("the claim is answered")
            .into_inner();
        assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
        receipts.push(signed::peek(&claim.receipt).expect("a receipt"));
    }
    receipts
}

/// Changes Leipzig's settlement of `receipt` while Leipzig is stopped: `None` removes it,
/// `Some(cents)` makes it a settlement of that amount (signed with Leipzig's own key).
async fn tamper(saxony: &mut Saxony, receipt: &Receipt, amount: Option<i64>) {
    saxony
        .federation
        .stop("leipzig")
        .await
        .expect("Leipzig stops");
    let key = saxony.signing_key("leipzig").expect("Leipzig's key");
    {
        let dir = &saxony.federation.node("leipzig").expect("Leipzig").dir;
        let db = sled::open(dir.join("data")).expect("Leipzig's store");
        let settlements = db.open_tree("settlements").expect("its settlements");
        let mut id = b"dresden".to_vec();
        id.push(0);
        id.extend_from_slice(receipt.claim_id.as_bytes());
        let stored = settlements
            .remove(&id)
            .expect("readable")
            .expect("the settlement is there");
        if let Some(amount_cents) = amount {
            // Stored as the record's hash (32 bytes) and the signed receipt.
            let mut value = stored[..32].to_vec();
            let changed = Receipt {
                amount_cents,
                ..receipt.clone()
            };
            value.extend(signed::seal(Kind::Receipt, &changed, &key));
            settlements.insert(&id, value).expect("written");
        }
        // Clearing reads the books through their index by pair and period (side ‖ peer ‖ 0 ‖
        // period ‖ 0 ‖ claim id → amount): it changes with them.
        let index = db.open_tree("clearing_index").expect("the clearing index");
        for period in schein_proto::period::Period::containing(receipt.service_month) {
            let mut key = b"Ldresden".to_vec();
            key.push(0);
            key.extend_from_slice(period.to_string().as_bytes());
            key.push(0);
            key.extend_from_slice(receipt.claim_id.as_bytes());
            match amount {
                None => index.remove(&key).map(drop),
                Some(cents) => index.insert(&key, &cents.to_be_bytes()[..]).map(drop),
            }
            .expect("the index is written");
        }
        db.flush().expect("flushed");
    }
    saxony
        .federation
        .restart("leipzig")
        .await
        .expect("Leipzig starts again");
}

/// Closes this quarter at Leipzig with two office identities (it has not ended: early).
async fn close_quarter(saxony: &Saxony) -> ClearingResult {
    let period = schein_proto::period::Period::containing(
        schein_proto::Day::today().month().expect("a month"),
    )[1]
    .to_string();
    let request = ClearingRequest { period };
    let mut first = saxony.office("leipzig").await.expect("Leipzig's office");
    let waiting = first
        .close_clearing(request.clone())
        .await
        .expect("the first office is answered")
        .into_inner();
    assert_eq!(waiting.state(), ClearingState::AwaitingSecondOffice);
    let second = saxony
        .federation
        .enroll("leipzig", schein_node::pki::Role::Office, "team-2")
        .expect("a second office identity");
    let mut second = OfficeClient::new(connect(&second).await.expect("connect"));
    let closed = second
        .close_clearing(request.clone())
        .await
        .expect("closed")
        .into_inner();
    let shown = first
        .show_clearing(request)
        .await
        .expect("shown")
        .into_inner();
    assert_eq!(shown, closed, "show says what close said");
    closed
}

fn pair<'r>(result: &'r ClearingResult, peer: &str) -> &'r PairClearing {
    result
        .pairs
        .iter()
        .find(|p| p.peer == peer)
        .expect("a pair with the peer")
}

#[tokio::test]
async fn clearing_catches_a_settlement_lost_at_one_side() {
    let mut saxony = Saxony::start().await.unwrap();
    let receipts = three_settled_claims(&saxony).await;
    tamper(&mut saxony, &receipts[1], None).await;
    let closed = close_quarter(&saxony).await;
    let with_dresden = pair(&closed, "dresden");
    assert!(
        with_dresden.reached && with_dresden.closed,
        "{with_dresden:?}"
    );
    assert!(!with_dresden.agreed, "the lost settlement is caught");
    assert_eq!(
        with_dresden.differing_claim_ids,
        [receipts[1].claim_id.clone()]
    );
    assert_eq!(
        with_dresden.liabilities_cents, 800,
        "what Leipzig's books still hold"
    );
    assert_eq!(with_dresden.peer_receivables_cents, 1_200);
    assert_eq!(closed.net_position_cents, -800);
    assert!(pair(&closed, "chemnitz").agreed);

    // A closed period refuses late changes to its totals: Dresden refuses the claim at once.
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let late = issue(&mut leipzig, &[]).await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis-2").await.unwrap();
    let refused = practice
        .submit_claim(claim_request(
            "late",
            &late.full_code,
            &[("GOAE-1", 1, 400)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&refused),
        Some(ErrorReason::PeriodClosed),
        "{refused:?}"
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn clearing_names_a_claim_whose_amount_differs_at_the_two_sides() {
    let mut saxony = Saxony::start().await.unwrap();
    let receipts = three_settled_claims(&saxony).await;
    // Leipzig's books say EUR 4.01 where Dresden's say EUR 4.00: same claim id, both sides.
    tamper(&mut saxony, &receipts[2], Some(401)).await;
    let closed = close_quarter(&saxony).await;
    let with_dresden = pair(&closed, "dresden");
    assert!(
        with_dresden.reached && !with_dresden.agreed,
        "{with_dresden:?}"
    );
    assert_eq!(
        with_dresden.differing_claim_ids,
        [receipts[2].claim_id.clone()]
    );
    assert_eq!(
        (
            with_dresden.liabilities_cents,
            with_dresden.peer_receivables_cents
        ),
        (1_201, 1_200)
    );
    saxony.shutdown().await.unwrap();
}
