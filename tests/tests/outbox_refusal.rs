//! A settlement record the issuer refuses for good ends its claim undeliverable, with the
//! issuer's reason, instead of being sent again forever; the office sees it. Real nodes over
//! real mTLS: a Dresden claim on a Leipzig voucher waits in Dresden's outbox while Leipzig is
//! down; while Dresden is stopped too, its stored record is changed to carry the claim id of
//! another claim Leipzig settled before (as a bug or a restored old store could), so Leipzig
//! refuses it as a reused claim id — the same refusal whenever it is sent.

use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ClaimStatusRequest, ListClaimsRequest, SettlementRecord,
};
use schein_tests::{Saxony, claim_request, issue};

/// Dresden's stored claim, as its store encodes it (`node/src/store/claims.rs`).
#[derive(Clone, PartialEq, prost::Message)]
struct ClaimEntry {
    #[prost(message, optional, tag = "1")]
    record: Option<ClaimRecord>,
    #[prost(string, tag = "2")]
    settlement_id: String,
    #[prost(bytes = "vec", tag = "3")]
    signed_record: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    fingerprint: Vec<u8>,
    #[prost(uint64, tag = "5")]
    sequence: u64,
    #[prost(bytes = "vec", repeated, tag = "6")]
    duplicate_keys: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "7")]
    unsigned_record: Option<SettlementRecord>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_issuer_refuses_for_good_ends_undeliverable() {
    use prost::Message;

    let mut saxony = Saxony::start().await.expect("Saxony starts");
    let mut leipzig = saxony.office("leipzig").await.expect("Leipzig's office");
    let voucher = issue(&mut leipzig, &[]).await.expect("a voucher");
    let mut practice = saxony
        .provider("dresden", "praxis")
        .await
        .expect("a Dresden practice");
    let first = practice
        .submit_claim(claim_request(
            "first",
            &voucher.full_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(first.state(), ClaimState::Settled, "{}", first.message);
    let taken: schein_proto::v1::Receipt =
        schein_proto::signed::peek(&first.receipt).expect("a receipt");

    saxony.federation.stop("leipzig").await.expect("stops");
    let second = practice
        .submit_claim(claim_request(
            "second",
            &voucher.full_code,
            // Another amount: the changed record is not the first one sent again.
            &[("GOAE-3", 1, 500)],
            Category::Treatment,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(second.state(), ClaimState::Pending, "{}", second.message);

    saxony.federation.stop("dresden").await.expect("stops");
    {
        let dir = &saxony.federation.node("dresden").expect("Dresden").dir;
        let db = sled::Config::new()
            .path(dir.join("data"))
            .flush_every_ms(None)
            .open()
            .expect("Dresden's store");
        let claims = db.open_tree("claims").expect("its claims");
        let key = b"praxis\0second".to_vec();
        let bytes = claims.get(&key).expect("readable").expect("the claim");
        let mut entry = ClaimEntry::decode(bytes.as_ref()).expect("a claim entry");
        let record = entry
            .unsigned_record
            .as_mut()
            .expect("signed at its first delivery: Leipzig could not be asked");
        record.claim_id = taken.claim_id.clone();
        claims.insert(&key, entry.encode_to_vec()).expect("written");
        db.flush().expect("flushed");
    }
    saxony.federation.restart("leipzig").await.expect("starts");
    saxony.federation.restart("dresden").await.expect("starts");

    let mut office = saxony.office("dresden").await.expect("Dresden's office");
    let mut ended = Vec::new();
    for _ in 0..120 {
        ended = office
            .list_held_claims(ListClaimsRequest {
                undeliverable_only: true,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .claims;
        if !ended.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let [claim] = ended.as_slice() else {
        panic!("one undeliverable claim: {ended:?}");
    };
    assert_eq!(claim.claim_id, "second");
    assert_eq!(claim.state(), ClaimState::Undeliverable);
    assert!(
        claim.message.contains("claim id was used before"),
        "the issuer's reason: {}",
        claim.message
    );
    let seen = practice
        .claim_status(ClaimStatusRequest {
            claim_id: "second".into(),
        })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(seen.state(), ClaimState::Undeliverable, "{}", seen.message);
    // Not sent again: it stays as it ended, and the settled claim is untouched.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let again = office
        .list_held_claims(ListClaimsRequest {
            undeliverable_only: true,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .claims;
    assert_eq!(again.len(), 1);
    let first_again = practice
        .claim_status(ClaimStatusRequest {
            claim_id: "first".into(),
        })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(first_again.state(), ClaimState::Settled);
    saxony.shutdown().await.expect("shut down");
}
