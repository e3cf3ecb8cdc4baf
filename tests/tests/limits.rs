//! Limits on what a request may hold, against real `schein-node` processes: the number of items
//! on a bill (`MAX_ITEMS`, exactly at and one over the limit), counts and amounts per item,
//! over-long strings in every text field that reaches a node, repeated fields far beyond any
//! real use, unknown fields, messages over the size limit, and page sizes. Each is refused with
//! a reason and a short sentence (never an echo of the oversized input), or — for what the
//! protocol lets a node ignore — ignored; the node keeps serving and nothing stored changes.
//! Requests that never reach a handler (undecodable, empty, oversized, two messages in one
//! call) get the same codes from every service, gRPC health included, with the reason in a
//! standard `google.rpc.Status`.

use prost::Message;
use schein_node::client::IdentityFile;
use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{
    Category, ClaimItem, ClaimState, ClearingRequest, ErrorReason, IssueVoucherRequest,
    LedgerRequest, ListClaimsRequest, ListVouchersRequest, ListVouchersResponse, ReportRequest,
    SettleRequest, StatementRequest, SubmitClaimRequest, VerifyVoucherRequest, VoucherRecord,
    VoucherStatusRequest,
};
use schein_tests::books::{Ledger, list_claims};
use schein_tests::claim_request;
use schein_tests::process::ProcessFederation;
use schein_tests::raw::{send_raw, send_raw_messages, unknown_fields};
use tonic::Code;

/// Longest status message accepted back: a sentence, not the request's content.
const MAX_MESSAGE: usize = 1024;

/// What a pair of nodes has stored, as their clients can see it: the issuer's vouchers with
/// what was claimed on them, both ledgers' lengths, and the provider's claims at the redeemer.
#[derive(Debug, PartialEq)]
struct Stored {
    vouchers: Vec<(String, i64)>,
    ledgers: Vec<usize>,
    claims: Vec<(String, i32)>,
}

async fn stored(
    issuer_office: &IdentityFile,
    redeemer_office: &IdentityFile,
    provider: &IdentityFile,
) -> Stored {
    let listed = OfficeClient::new(issuer_office.connect(None).await.expect("the node answers"))
        .list_vouchers(ListVouchersRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("the node answers")
        .into_inner();
    Stored {
        vouchers: listed
            .vouchers
            .into_iter()
            .map(|v| (v.short_code, v.claimed_cents))
            .collect(),
        ledgers: vec![
            Ledger::fetch(issuer_office)
                .await
                .expect("the node answers")
                .entries
                .len(),
            Ledger::fetch(redeemer_office)
                .await
                .expect("the node answers")
                .entries
                .len(),
        ],
        claims: list_claims(provider)
            .await
            .expect("the node answers")
            .into_iter()
            .map(|c| (c.claim_id, c.state))
            .collect(),
    }
}

/// Asserts a refusal with `reason` and a short message.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    outcome: Result<T, tonic::Status>,
    reason: ErrorReason,
) {
    let status = outcome.expect_err(what);
    assert_eq!(reason_of(&status), Some(reason), "{what}: {status:?}");
    assert!(
        !status.message().is_empty() && status.message().len() < MAX_MESSAGE,
        "{what}: a short sentence, got {} bytes",
        status.message().len()
    );
}

/// Asserts a refusal for size by the transport, before the service saw the request.
#[track_caller]
fn assert_too_large<T: std::fmt::Debug>(what: &str, outcome: Result<T, tonic::Status>) {
    let status = outcome.expect_err(what);
    assert!(
        status.code() == Code::ResourceExhausted,
        "{what}: {status:?}"
    );
    assert!(
        status.message().len() < MAX_MESSAGE,
        "{what}: {} bytes",
        status.message().len()
    );
}

fn item(fee_code: &str, count: u32, amount_cents: i64) -> ClaimItem {
    ClaimItem {
        fee_code: fee_code.to_owned(),
        count,
        amount_cents,
    }
}

fn claim(id: &str, voucher: &VoucherRecord, items: Vec<ClaimItem>) -> SubmitClaimRequest {
    SubmitClaimRequest {
        items,
        ..claim_request(id, &voucher.full_code, &[], Category::Treatment)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_beyond_the_limits_are_refused_and_change_nothing() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let leipzig_office = federation.node("leipzig").office().unwrap();
    let dresden_office = federation.node("dresden").office().unwrap();
    let provider = federation
        .node("dresden")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let voucher = OfficeClient::new(leipzig_office.connect(None).await.unwrap())
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut client = ProviderClient::new(provider.connect(None).await.unwrap());

    // Exactly at the limit: 50 items (EUR 116.50) are a bill like any other.
    let max_items = 50;
    let at_limit = claim(
        "at-limit",
        &voucher,
        vec![item("GOAE-250", 1, 233); max_items],
    );
    let record = client.submit_claim(at_limit).await.unwrap().into_inner();
    assert_eq!(record.state(), ClaimState::Settled, "{}", record.message);
    assert_eq!(record.amount_cents, 233 * max_items as i64);
    // The issuer's vouchers (with what was claimed on them), both ledgers, the provider's claims.
    let before = stored(&leipzig_office, &dresden_office, &provider).await;
    assert_eq!(
        before.vouchers.len(),
        1,
        "the voucher and its claim are seen"
    );
    assert_eq!(before.vouchers[0].1, 233 * max_items as i64);
    assert_eq!(before.claims.len(), 1);
    assert_eq!(before.ledgers, [1, 1], "one receipt at each side");

    let long = "X".repeat(20_000);
    let refused_for_items = [
        (
            "one item over the limit",
            vec![item("GOAE-250", 1, 233); max_items + 1],
        ),
        ("no items", vec![]),
        // About 50 KB: under the message size limit, far over the item limit.
        ("3000 items", vec![item("GOAE-250", 1, 233); 3000]),
        ("count over 99", vec![item("GOAE-1", 100, 466)]),
        ("count 0", vec![item("GOAE-1", 0, 466)]),
        ("amount i64::MAX", vec![item("GOAE-1", 1, i64::MAX)]),
        ("negative amount", vec![item("GOAE-1", 1, -466)]),
        ("20,000-character fee code", vec![item(&long, 1, 466)]),
    ];
    for (i, (what, items)) in refused_for_items.into_iter().enumerate() {
        let outcome = client
            .submit_claim(claim(&format!("refused-{i}"), &voucher, items))
            .await;
        assert_refused(what, outcome, ErrorReason::FeeItem);
    }
    let ok_items = vec![item("GOAE-1", 1, 466)];
    assert_refused(
        "65-character claim id",
        client
            .submit_claim(claim(&"c".repeat(65), &voucher, ok_items.clone()))
            .await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "20,000-character claim id",
        client
            .submit_claim(claim(&long, &voucher, ok_items.clone()))
            .await,
        ErrorReason::InvalidArgument,
    );
    let mut long_code = claim("long-code", &voucher, ok_items.clone());
    long_code.code = long.clone();
    assert_refused(
        "20,000-character voucher code",
        client.submit_claim(long_code).await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "20,000-character code to verify",
        client
            .verify_voucher(VerifyVoucherRequest {
                code: long.clone(),
                for_scope: 0,
            })
            .await,
        ErrorReason::InvalidArgument,
    );
    // About 340 KB of items: over the node's message size limit (64 KiB).
    assert_too_large(
        "20,000 items",
        client
            .submit_claim(claim(
                "huge",
                &voucher,
                vec![item("GOAE-250", 1, 233); 20_000],
            ))
            .await,
    );

    // Page sizes beyond the maximum are capped, cursors beyond the end are empty.
    let listed = client
        .list_claims(ListClaimsRequest {
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.claims.len(), 1);
    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let ledger = office
        .ledger(LedgerRequest {
            from_seq: u64::MAX,
            limit: u32::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ledger.entries.is_empty());
    let ledger = office
        .ledger(LedgerRequest {
            from_seq: 0,
            limit: u32::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.entries.len(), 1, "the one settlement");

    let after = stored(&leipzig_office, &dresden_office, &provider).await;
    assert_eq!(before, after, "no refused request stored anything");
    for node in &mut federation.nodes {
        node.assert_alive().unwrap();
    }
    // And the next genuine claim goes through.
    let record = client
        .submit_claim(claim("after", &voucher, ok_items))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.state(), ClaimState::Settled, "{}", record.message);
    println!("limits: 14 oversized or out-of-range claims refused; the node kept serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_office_federation_and_report_requests_are_refused_briefly() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    // Dresden does not run: Leipzig is called with Dresden's node certificate from here.
    federation.start_one("leipzig").await.unwrap();
    let leipzig = federation.node("leipzig");
    let office_identity = leipzig.office().unwrap();
    let office_channel = office_identity.connect(None).await.unwrap();
    let mut office = OfficeClient::new(office_channel.clone());
    for _ in 0..3 {
        office
            .issue_voucher(IssueVoucherRequest::default())
            .await
            .unwrap();
    }
    let list = |limit: u32| ListVouchersRequest {
        limit,
        ..Default::default()
    };
    let before = office
        .list_vouchers(list(u32::MAX))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.vouchers.len(), 3);
    let first = office.list_vouchers(list(1)).await.unwrap().into_inner();
    assert_eq!(first.vouchers.len(), 1);
    assert!(!first.next_page_token.is_empty());

    let long = "9".repeat(60_000);
    let mut peer = FederationClient::new(
        federation
            .node("dresden")
            .node_identity_at(leipzig)
            .unwrap()
            .connect(None)
            .await
            .unwrap(),
    );
    assert_refused(
        "a 60 KB settlement record",
        peer.settle(SettleRequest {
            signed_record: vec![1; 60_000],
        })
        .await,
        ErrorReason::BadSignature,
    );
    assert_refused(
        "a 60 KB serial",
        peer.voucher_status(VoucherStatusRequest {
            serial: vec![7; 60_000],
        })
        .await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "30,000 scopes, all unknown",
        office
            .issue_voucher(IssueVoucherRequest {
                scope: vec![99; 30_000],
                ..Default::default()
            })
            .await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "a 60 KB page token",
        office
            .list_vouchers(ListVouchersRequest {
                page_token: long.clone(),
                ..Default::default()
            })
            .await,
        ErrorReason::InvalidArgument,
    );

    // Unknown fields are skipped, as protobuf requires, up to the size limit.
    let mut padded = list(2).encode_to_vec();
    padded.extend(unknown_fields(50, 1000));
    let answer = send_raw(
        office_channel.clone(),
        "/schein.v1.Office/ListVouchers",
        padded,
    )
    .await
    .unwrap();
    assert_eq!(
        ListVouchersResponse::decode(answer.as_slice())
            .unwrap()
            .vouchers
            .len(),
        2
    );
    let mut oversized = list(2).encode_to_vec();
    oversized.extend(unknown_fields(300, 1000));
    assert_too_large(
        "300 KB of unknown fields",
        send_raw(
            office_channel.clone(),
            "/schein.v1.Office/ListVouchers",
            oversized,
        )
        .await,
    );
    let mut oversized = StatementRequest::default().encode_to_vec();
    oversized.extend(unknown_fields(300, 1000));
    let peer_channel = federation
        .node("dresden")
        .node_identity_at(leipzig)
        .unwrap()
        .connect(None)
        .await
        .unwrap();
    assert_too_large(
        "300 KB to the federation service",
        send_raw(peer_channel, "/schein.v1.Federation/Statement", oversized).await,
    );

    let leipzig = federation.node_mut("leipzig");
    leipzig.assert_alive().unwrap();
    let after = office.list_vouchers(list(0)).await.unwrap().into_inner();
    assert_eq!(before.vouchers, after.vouchers, "nothing stored changed");
    office
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap();
    println!(
        "limits: 7 oversized office, federation and report requests refused or ignored; the node kept serving"
    );
}

/// A period that is no period is refused with a sentence, not echoed back: the status message
/// travels in an HTTP/2 header, and 60 KB of it break the answer itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_periods_are_refused_with_a_short_message() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_one("leipzig").await.unwrap();
    let leipzig = federation.node("leipzig");
    let office_channel = leipzig.office().unwrap().connect(None).await.unwrap();
    let mut peer = FederationClient::new(
        federation
            .node("dresden")
            .node_identity_at(leipzig)
            .unwrap()
            .connect(None)
            .await
            .unwrap(),
    );
    let long = "9".repeat(60_000);
    assert_refused(
        "a 60 KB period in a statement request",
        peer.statement(StatementRequest {
            period: long.clone(),
            ..Default::default()
        })
        .await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "a 60 KB period in a report request",
        ReportsClient::new(office_channel.clone())
            .report(ReportRequest {
                period: long.clone(),
            })
            .await,
        ErrorReason::InvalidArgument,
    );
    assert_refused(
        "a 60 KB period to close",
        OfficeClient::new(office_channel)
            .show_clearing(ClearingRequest { period: long })
            .await,
        ErrorReason::InvalidArgument,
    );
    federation.node_mut("leipzig").assert_alive().unwrap();
}

/// One method of every service the node serves: what tonic's codec sees is the same for all.
const EVERY_SERVICE: [&str; 6] = [
    "/schein.v1.Office/IssueVoucher",
    "/schein.v1.Provider/VerifyVoucher",
    "/schein.v1.Federation/VoucherStatus",
    "/schein.v1.Reports/Report",
    "/schein.v1.Identities/Renew",
    "/grpc.health.v1.Health/Check",
];

/// Asserts `code` with reason `InvalidArgument` in a standard `google.rpc.Status` whose code
/// and message are the status's own.
#[track_caller]
fn assert_standard_refusal(what: &str, outcome: Result<Vec<u8>, tonic::Status>, code: Code) {
    let status = outcome.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(
        reason_of(&status),
        Some(ErrorReason::InvalidArgument),
        "{what}: {status:?}"
    );
    let rpc = schein_proto::rpc::Status::decode(status.details()).expect("a google.rpc.Status");
    assert_eq!(rpc.code, code as i32, "{what}");
    assert_eq!(rpc.message, status.message(), "{what}");
    assert_eq!(
        rpc.details[0].type_url, "type.googleapis.com/google.rpc.ErrorInfo",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_refuses_undecodable_empty_oversized_and_doubled_requests() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_one("leipzig").await.unwrap();
    let leipzig = federation.node("leipzig");
    // An office identity: every request here is refused before any handler asks who calls.
    let channel = leipzig.office().unwrap().connect(None).await.unwrap();
    let mut office = OfficeClient::new(channel.clone());
    let listed = |limit| ListVouchersRequest {
        limit,
        ..Default::default()
    };
    let before = office
        .list_vouchers(listed(100))
        .await
        .unwrap()
        .into_inner();
    let mut oversized = Vec::new();
    oversized.extend(unknown_fields(300, 1000));
    for path in EVERY_SERVICE {
        assert_standard_refusal(
            &format!("garbage to {path}"),
            send_raw(channel.clone(), path, vec![0xff; 16]).await,
            Code::InvalidArgument,
        );
        assert_standard_refusal(
            &format!("no message to {path}"),
            send_raw_messages(channel.clone(), path, vec![]).await,
            Code::InvalidArgument,
        );
        // Two empty messages: each alone is a valid request (an issue at the office).
        assert_standard_refusal(
            &format!("two messages to {path}"),
            send_raw_messages(channel.clone(), path, vec![vec![], vec![]]).await,
            Code::InvalidArgument,
        );
        let outcome = send_raw(channel.clone(), path, oversized.clone()).await;
        assert_standard_refusal(
            &format!("300 KB to {path}"),
            outcome,
            Code::ResourceExhausted,
        );
    }
    // A second message after a large first one, in separate chunks on the wire.
    let mut first = listed(1).encode_to_vec();
    first.extend(unknown_fields(40, 1000));
    assert_standard_refusal(
        "a 40 KB message and a second one",
        send_raw_messages(
            channel.clone(),
            "/schein.v1.Office/ListVouchers",
            vec![first.clone(), listed(1).encode_to_vec()],
        )
        .await,
        Code::InvalidArgument,
    );
    // One message alone is answered as ever.
    let answer = send_raw_messages(
        channel.clone(),
        "/schein.v1.Office/ListVouchers",
        vec![first],
    )
    .await
    .unwrap();
    assert_eq!(
        ListVouchersResponse::decode(answer.as_slice())
            .unwrap()
            .vouchers
            .len(),
        before.vouchers.len().min(1)
    );
    let after = office
        .list_vouchers(listed(100))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.vouchers, after.vouchers, "nothing was issued");
    federation.node_mut("leipzig").assert_alive().unwrap();
}

/// One provider's new claims per day are bounded (`claims_per_provider_per_day`): beyond it a
/// new claim is refused with RESOURCE_EXHAUSTED and a sentence, and nothing is stored; a claim
/// sent again is still answered, and another provider keeps its own allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_new_claims_per_day_are_bounded() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation
        .node_mut("dresden")
        .env
        .push(("SCHEIN_CLAIMS_PER_PROVIDER_PER_DAY".into(), "2".into()));
    federation.start_all().await.unwrap();
    let voucher = OfficeClient::new(
        federation
            .node("leipzig")
            .office()
            .unwrap()
            .connect(None)
            .await
            .unwrap(),
    )
    .issue_voucher(IssueVoucherRequest::default())
    .await
    .unwrap()
    .into_inner();
    let dresden = federation.node("dresden");
    let first = dresden.enroll(Role::Provider, "praxis-a").unwrap();
    let second = dresden.enroll(Role::Provider, "praxis-b").unwrap();
    let mut client = ProviderClient::new(first.connect(None).await.unwrap());
    // Different services, so that the duplicate guard holds none of them.
    let items = |fee_code: &str, cents| vec![item(fee_code, 1, cents)];
    for (id, fee_code, cents) in [("a-1", "GOAE-1", 466), ("a-2", "GOAE-3", 874)] {
        let record = client
            .submit_claim(claim(id, &voucher, items(fee_code, cents)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(record.state(), ClaimState::Settled, "{}", record.message);
    }
    let refused = client
        .submit_claim(claim("a-3", &voucher, items("GOAE-5", 466)))
        .await
        .expect_err("the third new claim of the day");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_refused(
        "the third new claim of the day",
        Err::<(), _>(refused),
        ErrorReason::TooMany,
    );
    let again = client
        .submit_claim(claim("a-1", &voucher, items("GOAE-1", 466)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.state(),
        ClaimState::Settled,
        "a stored claim is answered"
    );
    let other = ProviderClient::new(second.connect(None).await.unwrap())
        .submit_claim(claim("b-1", &voucher, items("GOAE-1", 466)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.state(), ClaimState::Settled, "{}", other.message);
    let stored: Vec<String> = list_claims(&first)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.claim_id)
        .collect();
    assert_eq!(
        stored.len(),
        2,
        "the refused claim was not stored: {stored:?}"
    );
    federation.node_mut("dresden").assert_alive().unwrap();
}
