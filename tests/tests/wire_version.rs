//! Nodes one wire version apart work together, a larger gap is refused by name: a real node
//! serves federation calls without a version header (wire version 1) and from a caller one
//! version ahead, refuses a caller two versions ahead with FAILED_PRECONDITION and the reason;
//! a statement asked for as version 1 asks (no page limit) comes whole, as version 2 asks in
//! pages with the totals on the first.

use schein_proto::error::reason_of;
use schein_proto::signed;
use schein_proto::v1::{
    Category, ClaimState, ErrorReason, MemberEntryRequest, PeriodStatement, StatementRequest,
};
use schein_proto::version::{WIRE_VERSION, WIRE_VERSION_HEADER};
use schein_tests::{Saxony, claim_request, issue};

fn with_version<T>(message: T, version: Option<u32>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(version) = version {
        request.metadata_mut().insert(
            WIRE_VERSION_HEADER,
            version.to_string().parse().expect("a header value"),
        );
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_one_version_apart_and_names_a_larger_gap() {
    let saxony = Saxony::start().await.expect("Saxony starts");
    let identity = saxony
        .node_identity("dresden", "leipzig")
        .expect("Dresden's node identity");
    let mut leipzig = saxony.federation_client(&identity).await.expect("connects");
    for version in [None, Some(1), Some(WIRE_VERSION), Some(WIRE_VERSION + 1)] {
        leipzig
            .member_entry(with_version(MemberEntryRequest {}, version))
            .await
            .unwrap_or_else(|e| panic!("served at {version:?}: {e}"));
    }
    let refused = leipzig
        .member_entry(with_version(MemberEntryRequest {}, Some(WIRE_VERSION + 2)))
        .await
        .expect_err("two versions ahead");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason_of(&refused), Some(ErrorReason::WireVersion));
    assert!(
        refused
            .message()
            .contains(&format!("wire version {}", WIRE_VERSION + 2)),
        "{}",
        refused.message()
    );

    // Two settled Dresden claims on Leipzig vouchers: Leipzig's statement for this quarter.
    let mut office = saxony.office("leipzig").await.expect("Leipzig's office");
    let mut practice = saxony
        .provider("dresden", "praxis")
        .await
        .expect("a Dresden practice");
    for (i, fee) in ["GOAE-1", "GOAE-3"].into_iter().enumerate() {
        let voucher = issue(&mut office, &[]).await.expect("a voucher");
        let claim = practice
            .submit_claim(claim_request(
                &format!("k{i}"),
                &voucher.full_code,
                &[(fee, 1, 400)],
                Category::Treatment,
            ))
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    }
    let period = schein_proto::period::Period::containing(
        schein_proto::Day::today().month().expect("a month"),
    )[1]
    .to_string();
    let statement = |request: StatementRequest, version| {
        let mut leipzig = leipzig.clone();
        async move {
            let bytes = leipzig
                .statement(with_version(request, version))
                .await
                .expect("a statement")
                .into_inner()
                .signed_statement;
            signed::peek::<PeriodStatement>(&bytes).expect("readable")
        }
    };
    let whole = statement(
        StatementRequest {
            period: period.clone(),
            ..Default::default()
        },
        None,
    )
    .await;
    assert!(!whole.paged && whole.next_page_token.is_empty());
    assert_eq!(whole.liabilities.len(), 2);

    let first = statement(
        StatementRequest {
            period: period.clone(),
            page_limit: 1,
            ..Default::default()
        },
        Some(WIRE_VERSION),
    )
    .await;
    assert!(first.paged);
    let totals = first.totals.expect("totals on the first page");
    assert_eq!(
        (totals.liabilities_count, totals.liabilities_cents),
        (2, 800)
    );
    assert_eq!(first.liabilities, whole.liabilities[..1]);
    let second = statement(
        StatementRequest {
            period: period.clone(),
            page_limit: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
        Some(WIRE_VERSION),
    )
    .await;
    assert_eq!(second.liabilities, whole.liabilities[1..]);
    assert!(second.totals.is_none());
    let refused = leipzig
        .statement(with_version(
            StatementRequest {
                period,
                page_limit: 1,
                page_token: "X".into(),
                ..Default::default()
            },
            Some(WIRE_VERSION),
        ))
        .await
        .expect_err("a made-up page token");
    assert_eq!(reason_of(&refused), Some(ErrorReason::InvalidArgument));
    saxony.shutdown().await.expect("shut down");
}
