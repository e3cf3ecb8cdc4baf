//! Claims and exactly-once settlement between cities, over real mTLS with real sled: receipts,
//! caps, races, an issuer that is down (stopped gracefully here; `hard_kill` and `crash` kill
//! real processes with SIGKILL), approvals, emergency vouchers, duplicates, ledgers, what the
//! issuer gets to see, and the issuer's own answer to a record sent twice.

use std::time::{Duration, Instant};

use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::ledger::verify_chain;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    ApproveCapRequest, Category, ClaimRecord, ClaimState, ClaimStatusRequest,
    DecideHeldClaimRequest, ErrorReason, IssueVoucherRequest, LedgerRequest, ListClaimsRequest,
    Outcome, Receipt, RejectReason, Scope, ShowVoucherRequest, SubmitClaimRequest,
};
use schein_tests::{Saxony, claim_request, connect, issue};
use tonic::transport::Channel;

async fn submit(
    provider: &mut ProviderClient<Channel>,
    request: SubmitClaimRequest,
) -> ClaimRecord {
    provider
        .submit_claim(request)
        .await
        .expect("claim accepted for processing")
        .into_inner()
}

async fn claimed_at_issuer(office: &mut OfficeClient<Channel>, code: &str) -> (i64, i64) {
    let record = office
        .show_voucher(ShowVoucherRequest {
            code: code.to_owned(),
        })
        .await
        .expect("show")
        .into_inner();
    (record.claimed_cents, record.medication_cents)
}

/// Waits until `provider`'s claim `id` is no longer pending; gives up after 30 s.
async fn settled_eventually(provider: &mut ProviderClient<Channel>, id: &str) -> ClaimRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = provider
            .claim_status(ClaimStatusRequest {
                claim_id: id.to_owned(),
            })
            .await
            .expect("status")
            .into_inner();
        if record.state() != ClaimState::Pending {
            return record;
        }
        assert!(Instant::now() < deadline, "claim {id} still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ledger_checks_out(office: &mut OfficeClient<Channel>) -> u64 {
    let mut entries = Vec::new();
    loop {
        let page = office
            .ledger(LedgerRequest {
                from_seq: entries.len() as u64 + 1,
                limit: 1000,
            })
            .await
            .expect("ledger")
            .into_inner();
        if page.entries.is_empty() {
            return verify_chain(&entries, &page.signed_head, &page.signing_keys)
                .expect("chain verifies")
                .entries;
        }
        entries.extend(page.entries);
    }
}

#[tokio::test]
async fn a_claim_in_another_city_settles_once_with_a_signed_receipt() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut dresden_office = saxony.office("dresden").await.unwrap();
    let voucher = issue(&mut leipzig, &[]).await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();

    let request = claim_request(
        "visit-1",
        &voucher.short_code,
        &[("GOAE-1", 1, 466), ("GOAE-5", 1, 466)],
        Category::Treatment,
    );
    let first = submit(&mut practice, request.clone()).await;
    assert_eq!(first.state(), ClaimState::Settled, "{}", first.message);
    assert_eq!(first.amount_cents, 932);
    assert_eq!(first.remaining_cap_cents, Some(50_000 - 932));

    // The receipt is Leipzig's, and any change to it breaks it.
    let leipzig_key = saxony.signing_key("leipzig").unwrap().verifying_key();
    let receipt: Receipt = signed::open(Kind::Receipt, &first.receipt, &leipzig_key).unwrap();
    assert_eq!(receipt.outcome(), Outcome::Accepted);
    assert_eq!(
        (receipt.amount_cents, receipt.redeemer.as_str()),
        (932, "dresden")
    );
    let mut altered = first.receipt.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    assert!(signed::open::<Receipt>(Kind::Receipt, &altered, &leipzig_key).is_err());
    let forged = signed::seal(
        Kind::Receipt,
        &receipt,
        &saxony.signing_key("dresden").unwrap(),
    );
    assert!(signed::open::<Receipt>(Kind::Receipt, &forged, &leipzig_key).is_err());

    // A retry returns the same receipt byte for byte and pays nothing more.
    let again = submit(&mut practice, request.clone()).await;
    assert_eq!(again.receipt, first.receipt);
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await,
        (932, 0)
    );
    let mut reused = request.clone();
    reused.items[0].amount_cents = 400;
    let status = practice.submit_claim(reused).await.unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::ClaimIdReused));

    assert_eq!(ledger_checks_out(&mut leipzig).await, 1);
    assert_eq!(ledger_checks_out(&mut dresden_office).await, 1);
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_cap_holds_for_treatment_and_medication_lies_outside_it() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut leipzig, &[Scope::Medication]).await.unwrap();
    let plain = issue(&mut leipzig, &[]).await.unwrap();
    let mut hospital = saxony.provider("chemnitz", "klinikum").await.unwrap();

    let day = submit(
        &mut hospital,
        claim_request(
            "c1",
            &voucher.full_code,
            &[("KH-TAG", 1, 40_000)],
            Category::Treatment,
        ),
    )
    .await;
    assert_eq!(day.state(), ClaimState::Settled);
    let over = submit(
        &mut hospital,
        claim_request(
            "c2",
            &voucher.full_code,
            &[("KH-AMB", 2, 20_000)],
            Category::Treatment,
        ),
    )
    .await;
    assert_eq!(
        (over.state(), over.reason()),
        (ClaimState::Rejected, RejectReason::OverCap),
        "{}",
        over.message
    );
    assert_eq!(over.remaining_cap_cents, Some(10_000));
    assert!(over.message.contains("100.00"), "{}", over.message);
    let medication = submit(
        &mut hospital,
        claim_request(
            "c3",
            &voucher.full_code,
            &[("MED", 1, 15_000)],
            Category::Medication,
        ),
    )
    .await;
    assert_eq!(medication.state(), ClaimState::Settled);
    assert_eq!(
        medication.remaining_cap_cents,
        Some(10_000),
        "medication is outside the cap"
    );
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await,
        (40_000, 15_000)
    );

    // After the office approves a higher cap, the rejected service can be billed again.
    leipzig
        .approve_cap(ApproveCapRequest {
            code: voucher.short_code.clone(),
            new_cap_cents: 70_000,
        })
        .await
        .unwrap();
    let again = submit(
        &mut hospital,
        claim_request(
            "c2-again",
            &voucher.full_code,
            &[("KH-AMB", 2, 20_000)],
            Category::Treatment,
        ),
    )
    .await;
    assert_eq!(again.state(), ClaimState::Settled, "{}", again.message);
    assert_eq!(again.remaining_cap_cents, Some(10_000));

    let status = hospital
        .submit_claim(claim_request(
            "c4",
            &plain.full_code,
            &[("MED", 1, 1_000)],
            Category::Medication,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::VoucherNotClaimable));
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn racing_claims_from_two_cities_never_exceed_the_cap() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let dresden = saxony.provider("dresden", "praxis").await.unwrap();
    let chemnitz = saxony.provider("chemnitz", "praxis").await.unwrap();
    let rounds = 15;
    for round in 0..rounds {
        let voucher = issue(&mut leipzig, &[]).await.unwrap();
        // Together 600 on a cap of 500: exactly one can be paid.
        let (mut d, mut c) = (dresden.clone(), chemnitz.clone());
        let (a, b) = tokio::join!(
            submit(
                &mut d,
                claim_request(
                    &format!("r{round}"),
                    &voucher.full_code,
                    &[("KH-TAG", 1, 30_000)],
                    Category::Treatment
                )
            ),
            submit(
                &mut c,
                claim_request(
                    &format!("r{round}"),
                    &voucher.full_code,
                    &[("KH-TAG", 1, 30_000)],
                    Category::Treatment
                )
            ),
        );
        let states = [a.state(), b.state()];
        assert!(
            states.contains(&ClaimState::Settled),
            "round {round}: {states:?}"
        );
        assert!(
            states.contains(&ClaimState::Rejected),
            "round {round}: {states:?}"
        );
        for claim in [&a, &b] {
            if claim.state() == ClaimState::Rejected {
                assert_eq!(claim.reason(), RejectReason::OverCap);
            }
        }
        assert_eq!(
            claimed_at_issuer(&mut leipzig, &voucher.short_code).await.0,
            30_000
        );
    }
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn claims_made_while_the_issuer_is_down_settle_exactly_once_when_it_returns() {
    let mut saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut leipzig, &[]).await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    saxony.federation.stop("leipzig").await.unwrap();

    for (i, fee) in ["GOAE-1", "GOAE-3", "GOAE-5", "GOAE-7"]
        .into_iter()
        .enumerate()
    {
        let claim = submit(
            &mut practice,
            claim_request(
                &format!("down-{i}"),
                &voucher.full_code,
                &[(fee, 1, 466)],
                Category::Treatment,
            ),
        )
        .await;
        assert_eq!(claim.state(), ClaimState::Pending, "{}", claim.message);
    }
    // A short code needs the issuer to be found at all.
    let status = practice
        .submit_claim(claim_request(
            "down-short",
            &voucher.short_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::PeerUnreachable));

    // Dresden restarts too while waiting: the outbox is durable.
    saxony.federation.stop("dresden").await.unwrap();
    saxony.federation.restart("dresden").await.unwrap();
    saxony.federation.restart("leipzig").await.unwrap();
    let mut practice = ProviderClient::new(
        connect(
            &schein_node::client::IdentityFile::load(
                &saxony
                    .federation
                    .node("dresden")
                    .unwrap()
                    .dir
                    .join("identities/provider-praxis.toml"),
            )
            .unwrap(),
        )
        .await
        .unwrap(),
    );
    for i in 0..4 {
        let claim = settled_eventually(&mut practice, &format!("down-{i}")).await;
        assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    }
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await.0,
        4 * 466
    );
    assert_eq!(ledger_checks_out(&mut leipzig).await, 4);
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn approvals_emergency_vouchers_and_duplicates() {
    let saxony = Saxony::start().await.unwrap();
    let mut anna = saxony.office("leipzig").await.unwrap();
    let mut ben = OfficeClient::new(
        connect(
            &saxony
                .federation
                .enroll("leipzig", Role::Office, "ben")
                .unwrap(),
        )
        .await
        .unwrap(),
    );
    let voucher = issue(&mut anna, &[]).await.unwrap();
    let approve = |cents| ApproveCapRequest {
        code: voucher.short_code.clone(),
        new_cap_cents: cents,
    };

    let small = anna
        .approve_cap(approve(80_000))
        .await
        .unwrap()
        .into_inner();
    assert!(small.applied);
    let large = anna
        .approve_cap(approve(150_000))
        .await
        .unwrap()
        .into_inner();
    assert!(!large.applied, "above EUR 1000 needs a second identity");
    let status = anna.approve_cap(approve(150_000)).await.unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::NeedsSecondApproval));
    let second = ben
        .approve_cap(approve(150_000))
        .await
        .unwrap()
        .into_inner();
    assert!(second.applied);
    assert_eq!(second.voucher.unwrap().cap_cents, Some(150_000));
    let status = ben.approve_cap(approve(100_000)).await.unwrap_err();
    assert_eq!(
        reason_of(&status),
        Some(ErrorReason::InvalidArgument),
        "approvals only raise"
    );

    let mut hospital = saxony.provider("dresden", "klinikum").await.unwrap();
    let big = submit(
        &mut hospital,
        claim_request(
            "h1",
            &voucher.full_code,
            &[("KH-TAG", 1, 80_000), ("KH-AMB", 1, 15_000)],
            Category::Treatment,
        ),
    )
    .await;
    assert_eq!(big.state(), ClaimState::Settled, "{}", big.message);

    // An emergency voucher for one hospital.
    let emergency = anna
        .issue_voucher(IssueVoucherRequest {
            emergency: true,
            bound_provider: "dresden/klinikum".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(emergency.emergency);
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    let status = practice
        .submit_claim(claim_request(
            "e1",
            &emergency.full_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::VoucherNotClaimable));
    let ok = submit(
        &mut hospital,
        claim_request(
            "e2",
            &emergency.full_code,
            &[("KH-AMB", 1, 15_000)],
            Category::Treatment,
        ),
    )
    .await;
    assert_eq!(ok.state(), ClaimState::Settled);

    // The same service twice under two claim ids is held for the office.
    let twice = |id: &str| {
        claim_request(
            id,
            &emergency.full_code,
            &[("KH-AMB", 1, 15_000)],
            Category::Treatment,
        )
    };
    let held = submit(&mut hospital, twice("e3")).await;
    assert_eq!(held.state(), ClaimState::Held, "{}", held.message);
    let held_again = submit(&mut hospital, twice("e4")).await;
    assert_eq!(held_again.state(), ClaimState::Held);
    let mut dresden_office = saxony.office("dresden").await.unwrap();
    let listed = dresden_office
        .list_held_claims(ListClaimsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.claims.len(), 2);
    let decide = |id: &str, release| DecideHeldClaimRequest {
        provider: "klinikum".into(),
        claim_id: id.into(),
        release,
    };
    let released = dresden_office
        .decide_held_claim(decide("e3", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        released.state(),
        ClaimState::Settled,
        "{}",
        released.message
    );
    let rejected = dresden_office
        .decide_held_claim(decide("e4", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (rejected.state(), rejected.reason()),
        (ClaimState::Rejected, RejectReason::Duplicate)
    );
    let status = dresden_office
        .decide_held_claim(decide("e4", true))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_claims_are_refused_and_change_nothing() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut leipzig, &[]).await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    let today = schein_proto::Day::today();
    let code = voucher.full_code.as_str();
    let mut future = claim_request("f", code, &[("GOAE-1", 1, 466)], Category::Treatment);
    future.service_date = Some(today.checked_add_days(3).unwrap().into());
    let mut before = claim_request("b", code, &[("GOAE-1", 1, 466)], Category::Treatment);
    before.service_date = Some(today.checked_add_days(-200).unwrap().into());
    let mut no_kind = claim_request("k", code, &[("GOAE-1", 1, 466)], Category::Treatment);
    no_kind.provider_kind = 0;
    let cases = [
        (
            claim_request("n", code, &[("GOAE-1", 1, -466)], Category::Treatment),
            ErrorReason::FeeItem,
        ),
        (
            claim_request("a", code, &[("GOAE-1", 1, 466_000)], Category::Treatment),
            ErrorReason::FeeItem,
        ),
        (
            claim_request("u", code, &[("NOPE-1", 1, 466)], Category::Treatment),
            ErrorReason::FeeItem,
        ),
        (
            claim_request("e", code, &[], Category::Treatment),
            ErrorReason::FeeItem,
        ),
        (
            claim_request("c", code, &[("GOAE-1", 1, 466)], Category::Unspecified),
            ErrorReason::InvalidArgument,
        ),
        (
            claim_request("bad id!", code, &[("GOAE-1", 1, 466)], Category::Treatment),
            ErrorReason::InvalidArgument,
        ),
        (
            claim_request("x", "LEJ-0000", &[("GOAE-1", 1, 466)], Category::Treatment),
            ErrorReason::VoucherNotClaimable,
        ),
        (future, ErrorReason::InvalidArgument),
        (before, ErrorReason::VoucherNotClaimable),
        (no_kind, ErrorReason::InvalidArgument),
    ];
    for (request, reason) in cases {
        let status = practice.submit_claim(request.clone()).await.unwrap_err();
        assert_eq!(reason_of(&status), Some(reason), "{request:?}: {status:?}");
    }
    let listed = practice
        .list_claims(ListClaimsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.claims.is_empty(), "nothing was stored");
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await,
        (0, 0)
    );

    // A Dresden provider cannot claim directly at Leipzig, the issuer.
    let dresden_practice = saxony
        .federation
        .enroll("dresden", Role::Provider, "direct")
        .unwrap();
    let at_leipzig = saxony
        .aimed_at(dresden_practice.clone(), "leipzig")
        .unwrap();
    let status = ProviderClient::new(connect(&at_leipzig).await.unwrap())
        .submit_claim(claim_request(
            "d",
            code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongNode));
    saxony.shutdown().await.unwrap();
}

/// Leipzig issues a voucher and a Dresden practice's claim `id` on it settles: Leipzig's
/// office, the voucher, and the receipt.
async fn one_settled_claim(
    saxony: &Saxony,
    id: &str,
) -> (
    OfficeClient<Channel>,
    schein_proto::v1::VoucherRecord,
    Receipt,
) {
    let mut leipzig = saxony.office("leipzig").await.expect("office");
    let voucher = issue(&mut leipzig, &[]).await.expect("issue");
    let mut practice = saxony
        .provider("dresden", "praxis")
        .await
        .expect("provider");
    let request = claim_request(
        id,
        &voucher.full_code,
        &[("GOAE-1", 1, 466)],
        Category::Treatment,
    );
    let claim = submit(&mut practice, request).await;
    let receipt = signed::peek(&claim.receipt).expect("a receipt");
    (leipzig, voucher, receipt)
}

#[tokio::test]
async fn a_node_cannot_replay_another_nodes_settlement_record() {
    let saxony = Saxony::start().await.unwrap();
    let (mut leipzig, voucher, receipt) = one_settled_claim(&saxony, "r1").await;

    // Chemnitz's node, with its own genuine certificate, sends a record signed by Dresden.
    let chemnitz_node = saxony.node_identity("chemnitz", "leipzig").unwrap();
    let record = schein_proto::v1::SettlementRecord {
        claim_id: receipt.claim_id.clone(),
        serial: receipt.serial.clone(),
        issuer: "leipzig".into(),
        amount_cents: 466,
        category: Category::Treatment as i32,
        service_month: receipt.service_month,
        redeemer: "dresden".into(),
        key_id: schein_proto::KeyId::of(&saxony.signing_key("dresden").unwrap().verifying_key()).0,
        voucher_hash: vec![],
        ..Default::default()
    };
    let replayed = signed::seal(
        Kind::Settlement,
        &record,
        &saxony.signing_key("dresden").unwrap(),
    );
    let mut federation = saxony.federation_client(&chemnitz_node).await.unwrap();
    let status = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: replayed,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&status),
        Some(ErrorReason::BadSignature),
        "{status:?}"
    );
    // Signed by Chemnitz but naming Dresden as redeemer.
    let mut as_chemnitz = record.clone();
    as_chemnitz.key_id =
        schein_proto::KeyId::of(&saxony.signing_key("chemnitz").unwrap().verifying_key()).0;
    let mislabelled = signed::seal(
        Kind::Settlement,
        &as_chemnitz,
        &saxony.signing_key("chemnitz").unwrap(),
    );
    let status = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: mislabelled,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&status),
        Some(ErrorReason::WrongNode),
        "{status:?}"
    );
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await.0,
        466
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_issuer_has_the_last_word_on_its_vouchers() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    let leipzig_key = saxony.signing_key("leipzig").unwrap();
    let today = schein_proto::Day::today();

    // Revoked before the service: the redeeming node, which asked the issuer, refuses at once.
    let revoked = issue(&mut leipzig, &[]).await.unwrap();
    leipzig
        .revoke_voucher(schein_proto::v1::RevokeVoucherRequest {
            code: revoked.short_code.clone(),
            reason: schein_proto::v1::RevocationReason::Lost as i32,
        })
        .await
        .unwrap();
    let refused = practice
        .submit_claim(claim_request(
            "rv",
            &revoked.full_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&refused),
        Some(ErrorReason::VoucherNotClaimable),
        "{refused:?}"
    );
    assert!(refused.message().contains("revoked on"), "{refused:?}");

    // Signed with Leipzig's real key but never issued (a leaked key): the issuer does not know it.
    let body = schein_proto::voucher::new_body(
        "leipzig",
        schein_proto::Serial::random(),
        &leipzig_key.verifying_key(),
        today,
        today,
        &[],
        Some(1_000_000),
    );
    let minted =
        schein_proto::FullCode(schein_proto::SignedVoucher::sign(&body, &leipzig_key)).to_string();
    let claim = submit(
        &mut practice,
        claim_request("mint", &minted, &[("GOAE-1", 1, 466)], Category::Treatment),
    )
    .await;
    assert_eq!(
        (claim.state(), claim.reason()),
        (ClaimState::Rejected, RejectReason::UnknownVoucher)
    );

    // The same leaked key re-signing a real serial with medication added: not the stored voucher.
    let genuine = issue(&mut leipzig, &[]).await.unwrap();
    let real = match schein_proto::VoucherCode::parse(&genuine.full_code).unwrap() {
        schein_proto::VoucherCode::Full(full) => {
            full.0.verify(&leipzig_key.verifying_key()).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let variant = schein_proto::voucher::new_body(
        "leipzig",
        real.serial,
        &leipzig_key.verifying_key(),
        real.valid_from,
        real.valid_until,
        &[Scope::Medication],
        real.cap_cents,
    );
    let variant = schein_proto::FullCode(schein_proto::SignedVoucher::sign(&variant, &leipzig_key))
        .to_string();
    let claim = submit(
        &mut practice,
        claim_request(
            "variant",
            &variant,
            &[("MED", 1, 5_000)],
            Category::Medication,
        ),
    )
    .await;
    assert_eq!(
        (claim.state(), claim.reason()),
        (ClaimState::Rejected, RejectReason::UnknownVoucher)
    );

    // Treatment items cannot be billed as medication to get around the cap.
    let with_medication = issue(&mut leipzig, &[Scope::Medication]).await.unwrap();
    let status = practice
        .submit_claim(claim_request(
            "dodge",
            &with_medication.full_code,
            &[("KH-TAG", 1, 80_000)],
            Category::Medication,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::FeeItem));

    // A cap that needs two signatures cannot be had by one office at issue time.
    let status = leipzig
        .issue_voucher(IssueVoucherRequest {
            cap_cents: Some(500_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn another_record_under_a_used_claim_id_is_refused_by_the_issuer() {
    let saxony = Saxony::start().await.unwrap();
    let (mut leipzig, voucher, receipt) = one_settled_claim(&saxony, "once").await;

    // Dresden's node itself sends a different amount under the same claim id.
    let dresden_node = saxony.node_identity("dresden", "leipzig").unwrap();
    let dresden_key = saxony.signing_key("dresden").unwrap();
    let altered = schein_proto::v1::SettlementRecord {
        claim_id: receipt.claim_id.clone(),
        serial: receipt.serial.clone(),
        issuer: "leipzig".into(),
        amount_cents: 46_600,
        category: Category::Treatment as i32,
        service_month: receipt.service_month,
        redeemer: "dresden".into(),
        key_id: schein_proto::KeyId::of(&dresden_key.verifying_key()).0,
        voucher_hash: vec![],
        ..Default::default()
    };
    let sealed = signed::seal(Kind::Settlement, &altered, &dresden_key);
    let status = saxony
        .federation_client(&dresden_node)
        .await
        .unwrap()
        .settle(schein_proto::v1::SettleRequest {
            signed_record: sealed,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&status),
        Some(ErrorReason::ClaimIdReused),
        "{status:?}"
    );
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await.0,
        466
    );
    saxony.shutdown().await.unwrap();
}

/// A voucher Leipzig's office issues, and the signed voucher its full code carries.
async fn issue_signed(
    leipzig: &mut OfficeClient<Channel>,
) -> (schein_proto::v1::VoucherRecord, schein_proto::SignedVoucher) {
    let voucher = issue(leipzig, &[]).await.expect("issued");
    let Ok(schein_proto::VoucherCode::Full(full)) =
        schein_proto::VoucherCode::parse(&voucher.full_code)
    else {
        panic!("not a full code")
    };
    (voucher, full.0)
}

/// Dresden's signed settlement record `id` of `amount_cents` for a treatment today on `voucher`
/// (a Leipzig voucher), as Dresden's node would send it.
fn dresden_record(
    voucher: &schein_proto::SignedVoucher,
    dresden_key: &ed25519_dalek::SigningKey,
    id: &str,
    amount_cents: i64,
) -> Vec<u8> {
    use sha2::Digest;
    let record = schein_proto::v1::SettlementRecord {
        claim_id: id.into(),
        serial: voucher
            .decode_own()
            .expect("a voucher of its own issuer")
            .serial
            .as_bytes()
            .to_vec(),
        issuer: "leipzig".into(),
        amount_cents,
        category: Category::Treatment as i32,
        service_month: schein_proto::Day::today()
            .month()
            .expect("today has a month"),
        redeemer: "dresden".into(),
        key_id: schein_proto::KeyId::of(&dresden_key.verifying_key()).0,
        voucher_hash: sha2::Sha256::digest(voucher.to_bytes()).to_vec(),
        accepted_on: Some(schein_proto::Day::today().into()),
        served_before_revocation: true,
    };
    signed::seal(Kind::Settlement, &record, dresden_key)
}

/// The issuer's idempotency, asked directly: the same signed record twice gets the original
/// receipt byte for byte, and is paid and entered in the ledger once. (A provider's retry is
/// answered from the redeemer's own store, so this is the only way to see the issuer's.)
#[tokio::test]
async fn the_issuer_answers_a_record_sent_again_with_its_original_receipt() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let (voucher, full) = issue_signed(&mut leipzig).await;
    let dresden_key = saxony.signing_key("dresden").unwrap();
    let signed_record = dresden_record(&full, &dresden_key, "resent-once", 466);
    let dresden_node = saxony.node_identity("dresden", "leipzig").unwrap();
    let mut federation = saxony.federation_client(&dresden_node).await.unwrap();
    let mut receipts = Vec::new();
    for _ in 0..2 {
        let response = federation
            .settle(schein_proto::v1::SettleRequest {
                signed_record: signed_record.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        receipts.push(response.signed_receipt);
    }
    assert_eq!(
        receipts[0], receipts[1],
        "the original receipt, byte for byte"
    );
    let receipt: Receipt = signed::peek(&receipts[0]).unwrap();
    assert_eq!(receipt.outcome(), Outcome::Accepted);
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await,
        (466, 0),
        "paid once"
    );
    assert_eq!(ledger_checks_out(&mut leipzig).await, 1, "one ledger entry");
    saxony.shutdown().await.unwrap();
}

/// A batch is decided as its records would be one by one: each answer equals `Settle`'s for
/// the same record, a record twice in a batch gets one receipt twice, a record that does not open
/// is refused alone, and the cap holds across the batch.
#[tokio::test]
async fn a_batch_of_records_is_answered_as_each_would_be_alone() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let (voucher, full) = issue_signed(&mut leipzig).await;
    let dresden_key = saxony.signing_key("dresden").unwrap();
    let record =
        |id: &str, amount_cents: i64| dresden_record(&full, &dresden_key, id, amount_cents);
    // EUR 500 cap: 300 + 150 fit, a further 100 does not.
    let (a, b, c) = (
        record("b-a", 30_000),
        record("b-b", 15_000),
        record("b-c", 10_000),
    );
    let mut forged = record("b-d", 100);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let node = saxony.node_identity("dresden", "leipzig").unwrap();
    let mut federation = saxony.federation_client(&node).await.unwrap();
    let answers = federation
        .settle_batch(schein_proto::v1::SettleBatchRequest {
            signed_records: vec![a.clone(), b.clone(), a.clone(), c.clone(), forged],
        })
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(answers.len(), 5);
    let receipt = |i: usize| -> Receipt { signed::peek(&answers[i].signed_receipt).unwrap() };
    assert_eq!(receipt(0).outcome(), Outcome::Accepted);
    assert_eq!(receipt(1).outcome(), Outcome::Accepted);
    assert_eq!(
        answers[2].signed_receipt, answers[0].signed_receipt,
        "the same record twice"
    );
    assert_eq!(
        (receipt(3).outcome(), receipt(3).reason()),
        (Outcome::Rejected, RejectReason::OverCap),
        "the cap holds across the batch"
    );
    assert!(answers[4].signed_receipt.is_empty());
    assert_eq!(answers[4].refusal, ErrorReason::BadSignature as i32);
    // Each answer is the one Settle gives for its record, byte for byte.
    for (i, bytes) in [(0, &a), (1, &b), (3, &c)] {
        let single = federation
            .settle(schein_proto::v1::SettleRequest {
                signed_record: bytes.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .signed_receipt;
        assert_eq!(single, answers[i].signed_receipt, "record {i}");
    }
    assert_eq!(
        claimed_at_issuer(&mut leipzig, &voucher.short_code).await,
        (45_000, 0)
    );
    assert_eq!(ledger_checks_out(&mut leipzig).await, 3, "three decisions");
    saxony.shutdown().await.unwrap();
}

/// A member is trusted, not believed: records for serials Leipzig never issued are rejected,
/// and one member may send at most `UNKNOWN_PER_DAY` of them a day — the next is refused
/// (RESOURCE_EXHAUSTED, nothing stored or counted), while a record sent before is still
/// answered with its receipt, a record on a real voucher still settles, and another member
/// keeps its own allowance.
#[tokio::test]
async fn records_for_vouchers_never_issued_are_bounded_per_member_and_day() {
    use schein_node::domain::settle::UNKNOWN_PER_DAY;
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let (_, full) = issue_signed(&mut leipzig).await;
    let dresden_key = saxony.signing_key("dresden").unwrap();
    // A record on a serial Leipzig never issued: the real voucher's serial, changed.
    let unknown = |i: u32| {
        let mut record: schein_proto::v1::SettlementRecord =
            signed::peek(&dresden_record(&full, &dresden_key, &format!("u-{i}"), 466)).unwrap();
        record.serial[..4].copy_from_slice(&i.to_be_bytes());
        record.serial[9] ^= 0xff;
        signed::seal(Kind::Settlement, &record, &dresden_key)
    };
    let node = saxony.node_identity("dresden", "leipzig").unwrap();
    let mut federation = saxony.federation_client(&node).await.unwrap();
    let mut first = Vec::new();
    for start in (0..UNKNOWN_PER_DAY).step_by(250) {
        let batch: Vec<Vec<u8>> = (start..(start + 250).min(UNKNOWN_PER_DAY))
            .map(unknown)
            .collect();
        let answers = federation
            .settle_batch(schein_proto::v1::SettleBatchRequest {
                signed_records: batch,
            })
            .await
            .unwrap()
            .into_inner()
            .answers;
        for answer in &answers {
            let receipt: Receipt = signed::peek(&answer.signed_receipt).expect("a receipt");
            assert_eq!(receipt.reason(), RejectReason::UnknownVoucher);
        }
        if first.is_empty() {
            first = answers[0].signed_receipt.clone();
        }
    }
    let refused = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: unknown(UNKNOWN_PER_DAY),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(reason_of(&refused), Some(ErrorReason::TooMany));
    // A record decided before: its original receipt, as ever.
    let again = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: unknown(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.signed_receipt, first);
    // A record on a voucher Leipzig issued still settles.
    let real = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: dresden_record(&full, &dresden_key, "real", 466),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt: Receipt = signed::peek(&real.signed_receipt).unwrap();
    assert_eq!(receipt.outcome(), Outcome::Accepted);
    // Chemnitz has its own allowance.
    let chemnitz_key = saxony.signing_key("chemnitz").unwrap();
    let mut record: schein_proto::v1::SettlementRecord =
        signed::peek(&unknown(UNKNOWN_PER_DAY + 1)).unwrap();
    record.redeemer = "chemnitz".into();
    record.key_id = schein_proto::KeyId::of(&chemnitz_key.verifying_key()).0;
    let chemnitz = saxony.node_identity("chemnitz", "leipzig").unwrap();
    let answer = saxony
        .federation_client(&chemnitz)
        .await
        .unwrap()
        .settle(schein_proto::v1::SettleRequest {
            signed_record: signed::seal(Kind::Settlement, &record, &chemnitz_key),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt: Receipt = signed::peek(&answer.signed_receipt).unwrap();
    assert_eq!(receipt.reason(), RejectReason::UnknownVoucher);
}

/// A member that keeps sending records its issuer rejects (here: over the voucher's cap) may do
/// so `REJECTED_PER_DAY` times a day; then its new records are refused until tomorrow
/// (RESOURCE_EXHAUSTED: an honest member's outbox retries them), while records decided before
/// still get their receipts.
#[tokio::test]
async fn rejected_records_are_bounded_per_member_and_day() {
    use schein_node::domain::settle::REJECTED_PER_DAY;
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let (_, full) = issue_signed(&mut leipzig).await;
    let dresden_key = saxony.signing_key("dresden").unwrap();
    let node = saxony.node_identity("dresden", "leipzig").unwrap();
    let mut federation = saxony.federation_client(&node).await.unwrap();
    let over_cap = |i: u32| dresden_record(&full, &dresden_key, &format!("over-{i}"), 60_000);
    for start in (0..REJECTED_PER_DAY).step_by(250) {
        let batch: Vec<Vec<u8>> = (start..(start + 250).min(REJECTED_PER_DAY))
            .map(over_cap)
            .collect();
        let answers = federation
            .settle_batch(schein_proto::v1::SettleBatchRequest {
                signed_records: batch,
            })
            .await
            .unwrap()
            .into_inner()
            .answers;
        for answer in &answers {
            let receipt: Receipt = signed::peek(&answer.signed_receipt).expect("a receipt");
            assert_eq!(receipt.reason(), RejectReason::OverCap);
        }
    }
    let refused = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: dresden_record(&full, &dresden_key, "fits", 466),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let again = federation
        .settle(schein_proto::v1::SettleRequest {
            signed_record: over_cap(0),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt: Receipt = signed::peek(&again.signed_receipt).unwrap();
    assert_eq!(
        receipt.reason(),
        RejectReason::OverCap,
        "decided before: answered"
    );
}
