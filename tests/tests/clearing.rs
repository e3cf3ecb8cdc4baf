//! Clearing a period with more than a handful of claims, between real `schein-node` processes:
//! the signed period statements the two nodes exchange must open, and the issuer's liabilities
//! must equal the redeemer's receivables, also when a period holds dozens of claims (a real
//! office has hundreds a year).

use std::time::Duration;

use schein_node::pki::Role;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{Category, ClaimState, ClearingRequest, IssueVoucherRequest};
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
    let books = check_pair(leipzig, dresden, &provider, &ids).await.unwrap();
    assert_eq!(books.settled, 45);

    let year = schein_proto::Day::today().month().unwrap() / 100;
    let cleared = tokio::time::timeout(
        Duration::from_secs(60),
        office.close_clearing(ClearingRequest {
            period: year.to_string(),
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    let pair = cleared.pairs.iter().find(|p| p.peer == "dresden").unwrap();
    println!("clearing of {year} at leipzig: {pair:?}");
    assert!(pair.reached, "Dresden's statement could be opened");
    assert!(pair.agreed, "{pair:?}");
    assert_eq!(pair.liabilities_cents, books.settled_cents);
    check_statements(leipzig, dresden, &books).await.unwrap();
}
