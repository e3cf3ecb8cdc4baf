//! Clearing a period with more than a handful of claims, between real `schein-node` processes:
//! the signed period statements the two nodes exchange must open, and the issuer's liabilities
//! must equal the redeemer's receivables, also when a period holds dozens of claims (a real
//! office has hundreds a year).

use std::time::Duration;

use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimState, ClearingRequest, ClearingState, ErrorReason, IssueVoucherRequest,
};
use schein_tests::books::{check_pair, check_statements};
use schein_tests::process::ProcessFederation;
use schein_tests::{FEE_CODES as CODES, claim_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_with_45_claims_clears_and_agrees() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let leipzig = federation.node("leipzig");
    let dresden = federation.node("dresden");
    let leipzig_office = leipzig.office().unwrap();
    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let provider = dresden.enroll(Role::Provider, "praxis").unwrap();
    let mut client = ProviderClient::new(provider.connect(None).await.unwrap());
    // Five vouchers, nine fee codes each, all served today: no duplicates, all under the cap.
    let mut ids = Vec::new();
    for v in 0..5 {
        let voucher = office
            .issue_voucher(IssueVoucherRequest::default())
            .await
            .unwrap()
            .into_inner();
        for (code, cents) in CODES {
            let id = format!("v{v}-{code}");
            let record = client
                .submit_claim(claim_request(
                    &id,
                    &voucher.full_code,
                    &[(code, 1, cents)],
                    Category::Treatment,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(record.state(), ClaimState::Settled, "{}", record.message);
            ids.push(id);
        }
    }
    // One more voucher, for claims around the close.
    let voucher_code = office
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap()
        .into_inner()
        .full_code;
    let books = check_pair(leipzig, dresden, &provider, &ids).await.unwrap();
    assert_eq!(
        (books.settled, books.lost, books.doubled),
        (45, 0, 0),
        "{books:?}"
    );

    // The year has not ended: closing it now is early and needs two office identities. The
    // first is told what it would refuse, and nothing closes yet.
    let year = schein_proto::Day::today().month().unwrap() / 100;
    let close = |office: &mut OfficeClient<tonic::transport::Channel>| {
        let mut office = office.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                office.close_clearing(ClearingRequest {
                    period: year.to_string(),
                }),
            )
            .await
            .expect("clearing answers within a minute")
        }
    };
    let first = close(&mut office).await.unwrap().into_inner();
    assert_eq!(
        first.state(),
        ClearingState::AwaitingSecondOffice,
        "{first:?}"
    );
    assert!(
        first.message.contains("refuses every later claim"),
        "{first:?}"
    );
    assert!(first.pairs.iter().all(|p| !p.closed));
    let again = close(&mut office).await.unwrap_err();
    assert_eq!(
        reason_of(&again),
        Some(ErrorReason::NeedsSecondApproval),
        "{again:?}"
    );
    let after_first = client
        .submit_claim(claim_request(
            "before-close",
            &voucher_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after_first.state(),
        ClaimState::Settled,
        "nothing closed yet"
    );
    ids.push("before-close".into());

    let second = leipzig.enroll(Role::Office, "team-2").unwrap();
    let mut second = OfficeClient::new(second.connect(None).await.unwrap());
    let cleared = close(&mut second).await.unwrap().into_inner();
    assert_eq!(cleared.state(), ClearingState::Closed, "{cleared:?}");
    assert!(cleared.early);
    let pair = cleared.pairs.iter().find(|p| p.peer == "dresden").unwrap();
    println!("clearing of {year} at leipzig: {pair:?}");
    assert!(
        pair.reached && pair.closed,
        "Dresden's statement could be opened"
    );
    assert!(pair.agreed, "{pair:?}");
    let books = check_pair(leipzig, dresden, &provider, &ids).await.unwrap();
    assert_eq!((books.settled, books.lost, books.doubled), (46, 0, 0));
    assert_eq!(pair.liabilities_cents, books.settled_cents);
    check_statements(leipzig, dresden, &books).await.unwrap();

    // Dresden recorded the close of the pair too, and refuses new claims for the year at once.
    let mut dresden_office =
        OfficeClient::new(dresden.office().unwrap().connect(None).await.unwrap());
    let at_dresden = dresden_office
        .show_clearing(ClearingRequest {
            period: year.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let pair = at_dresden
        .pairs
        .iter()
        .find(|p| p.peer == "leipzig")
        .unwrap();
    assert!(pair.closed && pair.closed_by == "leipzig", "{at_dresden:?}");
    let refused = client
        .submit_claim(claim_request(
            "after-close",
            &voucher_code,
            &[("GOAE-3", 1, 874)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&refused),
        Some(ErrorReason::PeriodClosed),
        "{refused:?}"
    );

    // Closing twice says so; a period that has not begun never closes.
    let twice = close(&mut second).await.unwrap_err();
    assert_eq!(
        reason_of(&twice),
        Some(ErrorReason::AlreadyClosed),
        "{twice:?}"
    );
    let future = office
        .close_clearing(ClearingRequest {
            period: (year + 1).to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason_of(&future),
        Some(ErrorReason::PeriodNotClosable),
        "{future:?}"
    );
    assert!(future.message().contains("never closes"), "{future:?}");

    // The nodes log into a file here: plain text, no terminal colour codes.
    for node in [leipzig, dresden] {
        let log = node.log();
        assert!(log.contains("pair closed by peer") || log.contains("closing period"));
        assert!(
            !log.contains('\u{1b}'),
            "{} logs colour codes into a file",
            node.id
        );
    }
}

/// A past period whose claim deadline has passed at both nodes closes with one office identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_past_its_deadline_closes_with_one_office() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let leipzig = federation.node("leipzig");
    let mut office = OfficeClient::new(leipzig.office().unwrap().connect(None).await.unwrap());
    // A quarter that ended more than three months ago, with no voucher valid in it at either
    // node (the federation is new): its deadline has passed everywhere.
    let today = schein_proto::Day::today();
    let past = schein_proto::period::Period::containing(
        today.checked_add_days(-200).unwrap().month().unwrap(),
    )[1];
    let closed = office
        .close_clearing(ClearingRequest {
            period: past.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state(), ClearingState::Closed, "{closed:?}");
    assert!(!closed.early);
    assert!(
        closed
            .pairs
            .iter()
            .all(|p| p.reached && p.agreed && p.closed)
    );
}
