//! Rules a claim meets on its way, over real mTLS with real sled, as offices and providers found
//! them missing in use: an emergency voucher is bound to one enrolled provider, and verify says
//! so to anyone else; the issuer's medication and per-claim ceilings hold at the redeemer (a
//! fast answer) and at the issuer (the authority, checked here with records sent to it
//! directly); a revocation does not take back services given before it, also when the issuer
//! was down when the claim came in; a period left half closed by an unreachable member is
//! completed by closing again.

use std::time::{Duration, Instant};

use schein_proto::error::reason_of;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ClaimStatusRequest, ClearingRequest, ClearingState,
    ErrorReason, InvalidReason, IssueVoucherRequest, Outcome, Receipt, RejectReason,
    RevocationReason, RevokeVoucherRequest, Scope, SettleRequest, SettlementRecord,
    ShowVoucherRequest, SubmitClaimRequest, Verdict, VoucherRecord,
};
use schein_proto::{Day, KeyId};
use schein_tests::{Saxony, assert_verdict, claim_request, issue, verify};
use sha2::Digest;
use tonic::transport::Channel;

fn days_ago(days: i32) -> Day {
    Day::today()
        .checked_add_days(-days)
        .expect("a day in range")
}

/// A claim served on `served` instead of today.
fn served_on(mut request: SubmitClaimRequest, served: Day) -> SubmitClaimRequest {
    request.service_date = Some(served.into());
    request
}

/// The issuer's decision on a record Dresden's node signs and sends it directly, bypassing
/// Dresden's own checks.
async fn direct_settle(
    saxony: &Saxony,
    voucher: &VoucherRecord,
    amount_cents: i64,
    category: Category,
) -> Receipt {
    let key = saxony.signing_key("dresden").expect("Dresden's key");
    let schein_proto::VoucherCode::Full(full) =
        schein_proto::VoucherCode::parse(&voucher.full_code).expect("a full code")
    else {
        panic!("not a full code")
    };
    let serial = full.0.decode_own().expect("a voucher").serial;
    let record = SettlementRecord {
        claim_id: data_encoding::HEXLOWER.encode(schein_proto::Serial::random().as_bytes()),
        serial: serial.as_bytes().to_vec(),
        issuer: "leipzig".into(),
        amount_cents,
        category: category as i32,
        service_month: Day::today().month().expect("a month"),
        redeemer: "dresden".into(),
        key_id: KeyId::of(&key.verifying_key()).0,
        voucher_hash: sha2::Sha256::digest(full.0.to_bytes()).to_vec(),
        accepted_on: Some(Day::today().into()),
        served_before_revocation: false,
    };
    let signed_record = signed::seal(Kind::Settlement, &record, &key);
    let node = saxony
        .node_identity("dresden", "leipzig")
        .expect("Dresden's node identity");
    let response = saxony
        .federation_client(&node)
        .await
        .expect("a federation client")
        .settle(SettleRequest { signed_record })
        .await
        .expect("Leipzig decides")
        .into_inner();
    signed::peek(&response.signed_receipt).expect("a receipt")
}

fn rejected_for(receipt: &Receipt) -> RejectReason {
    assert_eq!(receipt.outcome(), Outcome::Rejected, "{receipt:?}");
    receipt.reason()
}

async fn settled_eventually(provider: &mut ProviderClient<Channel>, id: &str) -> ClaimRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = provider
            .claim_status(ClaimStatusRequest {
                claim_id: id.to_owned(),
            })
            .await
            .expect("the claim's status")
            .into_inner();
        if record.state() != ClaimState::Pending {
            return record;
        }
        assert!(Instant::now() < deadline, "claim {id} still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_emergency_voucher_is_bound_to_one_enrolled_provider() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut hospital = saxony.provider("chemnitz", "klinikum").await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();

    let refused = |request: IssueVoucherRequest| {
        let mut leipzig = leipzig.clone();
        async move { leipzig.issue_voucher(request).await.unwrap_err() }
    };
    let unbound = refused(IssueVoucherRequest {
        emergency: true,
        ..Default::default()
    })
    .await;
    assert_eq!(reason_of(&unbound), Some(ErrorReason::InvalidArgument));
    let not_emergency = refused(IssueVoucherRequest {
        bound_provider: "chemnitz/klinikum".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        reason_of(&not_emergency),
        Some(ErrorReason::InvalidArgument)
    );
    for nobody in [
        "chemnitz/no-such-hospital",
        "leipzig/no-such-hospital",
        "nowhere/klinikum",
    ] {
        let unknown = refused(IssueVoucherRequest {
            emergency: true,
            bound_provider: nobody.into(),
            ..Default::default()
        })
        .await;
        assert_eq!(
            reason_of(&unknown),
            Some(ErrorReason::UnknownProvider),
            "{nobody}: {unknown:?}"
        );
    }

    let voucher = leipzig
        .issue_voucher(IssueVoucherRequest {
            emergency: true,
            bound_provider: "chemnitz/klinikum".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(voucher.emergency);
    assert_eq!(voucher.bound_provider, "chemnitz/klinikum");
    let shown = leipzig
        .show_voucher(ShowVoucherRequest {
            code: voucher.short_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(shown.emergency && shown.bound_provider == "chemnitz/klinikum");

    // Anyone else is told it is not for them, with whom it is for, also from the short code.
    for code in [&voucher.full_code, &voucher.short_code] {
        let answer = verify(&mut practice, code).await.unwrap();
        assert_verdict(&answer, Verdict::Invalid, InvalidReason::BoundElsewhere);
        assert!(answer.message.contains("chemnitz/klinikum"), "{answer:?}");
        let facts = answer.voucher.unwrap();
        assert!(facts.emergency && facts.bound_provider == "chemnitz/klinikum");
    }
    let answer = verify(&mut hospital, &voucher.short_code).await.unwrap();
    assert_verdict(&answer, Verdict::Valid, InvalidReason::Unspecified);
    assert!(answer.voucher.unwrap().emergency);

    // Dresden refuses its practice's claim; Leipzig, asked directly, rejects Dresden's record.
    let claim = practice
        .submit_claim(claim_request(
            "not-mine",
            &voucher.full_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&claim), Some(ErrorReason::VoucherNotClaimable));
    let receipt = direct_settle(&saxony, &voucher, 466, Category::Treatment).await;
    assert_eq!(rejected_for(&receipt), RejectReason::NotBoundProvider);

    let claim = hospital
        .submit_claim(claim_request(
            "mine",
            &voucher.full_code,
            &[("KH-AMB", 1, 15_000)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn ceilings_hold_at_the_redeemer_and_at_the_issuer() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut pharmacy = saxony.provider("dresden", "apotheke").await.unwrap();
    let voucher = issue(&mut leipzig, &[Scope::Medication]).await.unwrap();

    // MED costs at most EUR 200 a unit; Leipzig pays EUR 500 of medication per voucher.
    let medication = |id: &str, count: u32| {
        claim_request(
            id,
            &voucher.full_code,
            &[("MED", count, 20_000 * i64::from(count))],
            Category::Medication,
        )
    };
    let at_once = pharmacy
        .submit_claim(medication("m99", 99))
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&at_once),
        Some(ErrorReason::OverCeiling),
        "{at_once:?}"
    );
    let three = pharmacy
        .submit_claim(medication("m3", 3))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&three), Some(ErrorReason::OverCeiling));
    let two = pharmacy
        .submit_claim(medication("m2", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.state(), ClaimState::Settled, "{}", two.message);
    // EUR 100 left: the verify answer says so, and the redeemer refuses a second EUR 200.
    let facts = verify(&mut pharmacy, &voucher.short_code)
        .await
        .unwrap()
        .voucher
        .unwrap();
    assert_eq!(facts.remaining_medication_cents, Some(10_000));
    let mut one = medication("m1", 1);
    one.service_date = Some(days_ago(0).into());
    let more = pharmacy.submit_claim(one).await.unwrap_err();
    assert_eq!(reason_of(&more), Some(ErrorReason::OverCeiling));
    assert!(more.message().contains("EUR 100.00"), "{more:?}");
    // The issuer, asked directly, holds the same line.
    let receipt = direct_settle(&saxony, &voucher, 20_000, Category::Medication).await;
    assert_eq!(rejected_for(&receipt), RejectReason::OverMedicationCeiling);

    // One claim may ask for at most EUR 2,500: four hospital days are refused at once, and the
    // issuer rejects such a record even on a voucher whose cap would allow it.
    let mut hospital = saxony.provider("dresden", "krankenhaus").await.unwrap();
    let days = hospital
        .submit_claim(claim_request(
            "kh4",
            &voucher.full_code,
            &[("KH-TAG", 4, 320_000)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&days), Some(ErrorReason::OverCeiling), "{days:?}");
    let receipt = direct_settle(&saxony, &voucher, 300_000, Category::Treatment).await;
    assert_eq!(rejected_for(&receipt), RejectReason::OverClaimCeiling);
    let (claimed, medication) = {
        let shown = leipzig
            .show_voucher(ShowVoucherRequest {
                code: voucher.short_code.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        (shown.claimed_cents, shown.medication_cents)
    };
    assert_eq!(
        (claimed, medication),
        (0, 40_000),
        "nothing over a ceiling was paid"
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_revocation_does_not_take_back_services_given_before_it() {
    let mut saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    let backdated = |leipzig: &mut schein_proto::v1::office_client::OfficeClient<Channel>| {
        let mut leipzig = leipzig.clone();
        async move {
            leipzig
                .issue_voucher(IssueVoucherRequest {
                    valid_from: Some(days_ago(10).into()),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let revoke = |leipzig: &mut schein_proto::v1::office_client::OfficeClient<Channel>,
                  code: String| {
        let mut leipzig = leipzig.clone();
        async move {
            leipzig
                .revoke_voucher(RevokeVoucherRequest {
                    code,
                    reason: RevocationReason::Lost as i32,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };

    // The card is reported lost today; a visit three days ago is billed afterwards: paid.
    let voucher = backdated(&mut leipzig).await;
    let revoked = revoke(&mut leipzig, voucher.short_code.clone()).await;
    assert_eq!(
        revoked.revoked_on,
        Some(Day::today().into()),
        "only the day is kept"
    );
    let earlier = practice
        .submit_claim(served_on(
            claim_request(
                "before",
                &voucher.full_code,
                &[("GOAE-1", 1, 466)],
                Category::Treatment,
            ),
            days_ago(3),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(earlier.state(), ClaimState::Settled, "{}", earlier.message);
    // A service today, on the day of the revocation, is not paid.
    let today = practice
        .submit_claim(claim_request(
            "today",
            &voucher.full_code,
            &[("GOAE-3", 1, 874)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&today), Some(ErrorReason::VoucherNotClaimable));

    // Billed while Leipzig is down, revoked before Dresden's outbox gets through: still paid,
    // since the visit came before the revocation.
    let voucher = backdated(&mut leipzig).await;
    saxony.federation.stop("leipzig").await.unwrap();
    let pending = practice
        .submit_claim(served_on(
            claim_request(
                "outage",
                &voucher.full_code,
                &[("GOAE-1", 1, 466)],
                Category::Treatment,
            ),
            days_ago(2),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.state(), ClaimState::Pending, "{}", pending.message);
    saxony.federation.restart("leipzig").await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    revoke(&mut leipzig, voucher.short_code.clone()).await;
    let settled = settled_eventually(&mut practice, "outage").await;
    assert_eq!(settled.state(), ClaimState::Settled, "{}", settled.message);
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_period_left_half_closed_is_completed_by_closing_again() {
    let mut saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let past = schein_proto::period::Period::containing(days_ago(200).month().unwrap())[1];
    let request = ClearingRequest {
        period: past.to_string(),
    };
    saxony.federation.stop("chemnitz").await.unwrap();
    let half = leipzig
        .close_clearing(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(half.state(), ClearingState::Closing, "{half:?}");
    assert!(!half.closed);
    let chemnitz = half.pairs.iter().find(|p| p.peer == "chemnitz").unwrap();
    assert!(!chemnitz.closed && !chemnitz.reached && !chemnitz.note.is_empty());
    let dresden = half.pairs.iter().find(|p| p.peer == "dresden").unwrap();
    assert!(dresden.closed && dresden.reached && dresden.agreed);
    assert!(half.message.contains("chemnitz"), "{}", half.message);
    let shown = leipzig
        .show_clearing(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        shown.state(),
        ClearingState::Closing,
        "show tells the truth"
    );

    saxony.federation.restart("chemnitz").await.unwrap();
    let done = leipzig
        .close_clearing(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state(), ClearingState::Closed, "{done:?}");
    assert!(done.pairs.iter().all(|p| p.closed && p.reached && p.agreed));
    let twice = leipzig.close_clearing(request).await.unwrap_err();
    assert_eq!(reason_of(&twice), Some(ErrorReason::AlreadyClosed));
    saxony.shutdown().await.unwrap();
}
