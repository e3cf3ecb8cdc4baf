//! What funders see: reports that match a recount of the raw records (live for the node's
//! office, as of the end of last week for funders), small cells suppressed, who may read them,
//! and the budget warning when the year's forecast exceeds the budget.

use std::collections::{BTreeMap, BTreeSet};

use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::period::Period;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{
    Category, ClaimState, ErrorReason, IssueVoucherRequest, NodeReport, RejectReason, ReportCell,
    ReportRequest, VerifyVoucherRequest,
};
use schein_tests::{Saxony, claim_request, connect, issue};

fn this_quarter() -> String {
    let month = schein_proto::Day::today()
        .month()
        .expect("today has a month");
    Period::containing(month)[1].to_string()
}

async fn report_of(reports: &mut ReportsClient<tonic::transport::Channel>) -> NodeReport {
    reports
        .report(ReportRequest {
            period: this_quarter(),
        })
        .await
        .expect("report")
        .into_inner()
}

fn visible(cell: &Option<ReportCell>) -> Option<&ReportCell> {
    cell.as_ref().filter(|c| !c.suppressed)
}

/// A small deterministic generator, so that a failing workload can be replayed.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn reports_match_a_recount_of_the_records() {
    for seed in [0x5eed, 7, 2026] {
        recount_workload(seed).await;
    }
}

/// One random workload of claims from three cities on Leipzig's vouchers, then the report
/// compared with a recount of what the test saw settled. A helper of a test: any failure in it
/// is the test's failure.
#[allow(clippy::unwrap_used)]
async fn recount_workload(seed: u64) {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut providers: Vec<(String, ProviderClient<_>)> = Vec::new();
    for (city, name) in [
        ("dresden", "a"),
        ("dresden", "b"),
        ("chemnitz", "c"),
        ("leipzig", "d"),
    ] {
        providers.push((city.to_owned(), saxony.provider(city, name).await.unwrap()));
    }
    let mut vouchers = Vec::new();
    for _ in 0..14 {
        vouchers.push(issue(&mut leipzig, &[Scope::Medication]).await.unwrap());
    }
    let mut rng = Lcg(seed);
    // The recount: settled claims, amount and distinct vouchers, overall and per redeeming
    // city; vouchers with a claim rejected over the cap.
    let mut settled = (0u64, 0i64, BTreeSet::new());
    let mut flows: BTreeMap<String, (u64, i64, BTreeSet<usize>)> = BTreeMap::new();
    let mut rejected = (0u64, BTreeSet::new());
    let fees = [
        "GOAE-1", "GOAE-3", "GOAE-5", "GOAE-7", "GOAE-8", "KH-AMB", "KH-TAG",
    ];
    let week_before = schein_proto::Day::today();
    for i in 0..60 {
        let v = rng.below(vouchers.len() as u64) as usize;
        let (city, provider) = &mut providers[rng.below(4) as usize];
        let fee = fees[rng.below(fees.len() as u64) as usize];
        let max = schein_node::fees::FeeSchedule::builtin()
            .max_unit_cents(fee)
            .unwrap()
            .0;
        let amount = 100 + rng.below((max - 100) as u64) as i64;
        let claim = provider
            .submit_claim(claim_request(
                &format!("c{i}"),
                &vouchers[v].full_code,
                &[(fee, 1, amount)],
                Category::Treatment,
            ))
            .await
            .unwrap()
            .into_inner();
        match claim.state() {
            ClaimState::Settled => {
                settled.0 += 1;
                settled.1 += amount;
                settled.2.insert(v);
                let flow = flows.entry(city.clone()).or_default();
                flow.0 += 1;
                flow.1 += amount;
                flow.2.insert(v);
            }
            ClaimState::Rejected => {
                assert_eq!(claim.reason(), RejectReason::OverCap, "{}", claim.message);
                rejected.0 += 1;
                rejected.1.insert(v);
            }
            ClaimState::Held => {} // the same fee on the same day by the same provider
            other => panic!("unexpected {other:?}"),
        }
    }
    // The office sees live figures.
    let mut reports = ReportsClient::new(
        connect(&saxony.federation.office("leipzig").unwrap())
            .await
            .unwrap(),
    );
    let report = report_of(&mut reports).await;
    assert_eq!(
        report.released_through, None,
        "the office's figures are live"
    );

    let issued = visible(&report.issued).expect("14 vouchers are shown");
    assert_eq!(issued.count, 14);
    let cell = visible(&report.settled).expect("enough vouchers to show the total");
    assert_eq!(
        (cell.count, cell.amount_cents, cell.vouchers),
        (settled.0, settled.1, settled.2.len() as u64)
    );
    // Every claim is treatment: the category is the total, and nothing partners it.
    let treatment = report
        .categories
        .iter()
        .find(|c| c.category == "treatment")
        .unwrap();
    let treatment = visible(&treatment.cell).expect("treatment is the whole total");
    assert_eq!(
        (treatment.count, treatment.amount_cents),
        (settled.0, settled.1)
    );
    // Each city: small ones suppressed, the others as recounted or hidden as partners; the
    // hidden ones together are the total minus the published ones, and not small.
    let mut hidden = (0u64, 0i64, false);
    for flow in &report.flows {
        let (count, amount, distinct) = flows.get(&flow.redeemer).cloned().unwrap_or_default();
        let small = (1..5).contains(&distinct.len());
        match visible(&flow.cell) {
            Some(cell) => {
                assert!(!small, "{}: small flow published", flow.redeemer);
                assert_eq!(
                    (cell.count, cell.amount_cents, cell.vouchers),
                    (count, amount, distinct.len() as u64),
                    "{}",
                    flow.redeemer
                );
            }
            None => {
                hidden.0 += count;
                hidden.1 += amount;
                hidden.2 |= distinct.len() >= 5;
            }
        }
    }
    assert!(
        hidden.0 == 0 || hidden.2,
        "hidden flows of {} claims, none of 5 vouchers",
        hidden.0
    );
    let shown_flows = report
        .flows
        .iter()
        .filter(|f| visible(&f.cell).is_some_and(|c| c.vouchers > 0))
        .count();
    assert!(
        shown_flows >= 2,
        "the workload is large enough to show flows: {:?}",
        report.flows
    );
    // Every reason is listed; rejections over the cap have no total to partner with.
    assert_eq!(report.rejected.len(), 6, "{:?}", report.rejected);
    for reason in &report.rejected {
        let (count, distinct) = if reason.reason() == RejectReason::OverCap {
            (rejected.0, rejected.1.len() as u64)
        } else {
            (0, 0)
        };
        let cell = reason.cell.as_ref().unwrap();
        if (1..5).contains(&distinct) {
            assert!(cell.suppressed, "{reason:?}");
        } else {
            assert_eq!(
                (cell.suppressed, cell.count, cell.vouchers),
                (false, count, distinct),
                "{reason:?}"
            );
        }
    }

    // A funder sees the figures as of the end of last week: none of today's claims.
    let funder = saxony
        .federation
        .enroll("leipzig", Role::Funder, "land")
        .unwrap();
    let mut reports = ReportsClient::new(connect(&funder).await.unwrap());
    let released = report_of(&mut reports).await;
    let today = schein_proto::Day::today();
    assert_eq!(
        released.released_through,
        Some(schein_node::store::Store::released_through(today).into())
    );
    let released_settled = visible(&released.settled).expect("zero is not small");
    if schein_node::store::Store::released_through(week_before)
        == schein_node::store::Store::released_through(today)
    {
        assert_eq!(
            (released_settled.count, released_settled.amount_cents),
            (0, 0)
        );
    } else {
        // A week ended during the test: its claims may be released.
        assert!(released_settled.count <= settled.0);
    }
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_cell_of_fewer_than_five_vouchers_can_be_read() {
    let saxony = Saxony::start().await.unwrap();
    let mut leipzig = saxony.office("leipzig").await.unwrap();
    let mut practice = saxony.provider("dresden", "praxis").await.unwrap();
    let mut hospital = saxony.provider("chemnitz", "klinikum").await.unwrap();
    let mut local = saxony.provider("leipzig", "praxis").await.unwrap();
    // Three vouchers claimed in Dresden, seven in Chemnitz, eight in Leipzig.
    for i in 0..18 {
        let voucher = issue(&mut leipzig, &[]).await.unwrap();
        let provider = match i {
            0..3 => &mut practice,
            3..10 => &mut hospital,
            _ => &mut local,
        };
        let claim = provider
            .submit_claim(claim_request(
                &format!("s{i}"),
                &voucher.full_code,
                &[("GOAE-1", 1, 466)],
                Category::Treatment,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(claim.state(), ClaimState::Settled);
    }
    let mut reports = ReportsClient::new(
        connect(&saxony.federation.office("leipzig").unwrap())
            .await
            .unwrap(),
    );
    let report = report_of(&mut reports).await;
    let flow = |city: &str| {
        report
            .flows
            .iter()
            .find(|f| f.redeemer == city)
            .unwrap()
            .cell
    };
    assert!(
        visible(&flow("dresden")).is_none(),
        "3 vouchers: suppressed"
    );
    // Dresden would be the total minus the rest: Chemnitz, the smallest city of 5 vouchers or
    // more, goes too, and the two together are 10 vouchers.
    assert!(
        visible(&flow("chemnitz")).is_none(),
        "Dresden = total - Chemnitz - Leipzig"
    );
    let total = visible(&report.settled).expect("18 vouchers: the total is shown");
    let leipzig_flow = flow("leipzig");
    let leipzig_flow = visible(&leipzig_flow).expect("8 vouchers: Leipzig is shown");
    assert_eq!(
        (total.vouchers, leipzig_flow.vouchers),
        (18, 8),
        "{report:?}"
    );
    assert_eq!(total.amount_cents - leipzig_flow.amount_cents, 10 * 466);
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn funders_read_reports_and_do_nothing_else() {
    let saxony = Saxony::start().await.unwrap();
    let funder = saxony
        .federation
        .enroll("leipzig", Role::Funder, "land")
        .unwrap();
    let channel = connect(&funder).await.unwrap();
    ReportsClient::new(channel.clone())
        .report(ReportRequest {
            period: this_quarter(),
        })
        .await
        .expect("a funder reads reports");
    // ... of other members too (the funder's identity is checked against Leipzig's CA there).
    let at_dresden = saxony.aimed_at(funder.clone(), "dresden").unwrap();
    ReportsClient::new(connect(&at_dresden).await.unwrap())
        .report(ReportRequest {
            period: this_quarter(),
        })
        .await
        .expect("a funder reads another member's report");

    let status = OfficeClient::new(channel.clone())
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
    let status = ProviderClient::new(channel.clone())
        .verify_voucher(VerifyVoucherRequest {
            code: "LEJ-0000".into(),
            for_scope: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
    let status = ProviderClient::new(channel.clone())
        .submit_claim(claim_request(
            "f",
            "LEJ-0000",
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));

    let provider = saxony
        .federation
        .enroll("leipzig", Role::Provider, "praxis")
        .unwrap();
    let status = ReportsClient::new(connect(&provider).await.unwrap())
        .report(ReportRequest {
            period: this_quarter(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
    let status = ReportsClient::new(connect(&funder).await.unwrap())
        .report(ReportRequest {
            period: "2026-Q9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
    saxony.shutdown().await.unwrap();
}

use schein_proto::v1::Scope;

/// A node whose forecast exceeds its annual budget warns, in the report of every quarter of the
/// year and of the year itself; one whose budget holds does not.
#[tokio::test]
async fn the_report_warns_when_the_forecast_exceeds_the_budget() {
    schein_tests::init_tracing();
    for (budget_cents, warns) in [("1000", true), ("100000000", false)] {
        let dir = tempfile::tempdir().unwrap();
        let federation = schein_node::local::LocalFederation::start_with(
            dir.path(),
            &schein_node::local::SAXONY,
            &[
                ("peer_timeout_ms", schein_tests::TEST_PEER_TIMEOUT_MS),
                ("annual_budget_cents", budget_cents),
            ],
        )
        .await
        .unwrap();
        let office = federation.office("leipzig").unwrap();
        let mut leipzig = OfficeClient::new(connect(&office).await.unwrap());
        let practice = federation
            .enroll("leipzig", Role::Provider, "praxis")
            .unwrap();
        let mut practice = ProviderClient::new(connect(&practice).await.unwrap());
        // Six vouchers with a claim each: enough that the spend is not suppressed.
        for i in 0..6 {
            let voucher = issue(&mut leipzig, &[]).await.unwrap();
            let claim = practice
                .submit_claim(claim_request(
                    &format!("b{i}"),
                    &voucher.full_code,
                    &[("GOAE-1", 1, 466)],
                    Category::Treatment,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
        }
        let mut reports = ReportsClient::new(connect(&office).await.unwrap());
        let year = schein_proto::Day::today().month().unwrap() / 100;
        let periods: Vec<String> = Period::quarters(year)
            .iter()
            .map(ToString::to_string)
            .chain([year.to_string()])
            .collect();
        for period in periods {
            let report = reports
                .report(ReportRequest {
                    period: period.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            let spent = visible(&report.spent_this_year).expect("six vouchers are published");
            assert_eq!(spent.amount_cents, 6 * 466, "{period}");
            let forecast = report.forecast_cents.expect("a forecast");
            assert!(forecast >= spent.amount_cents, "{period}: {forecast}");
            assert_eq!(
                report.forecast_exceeds_budget, warns,
                "{period}: budget {budget_cents}, forecast {forecast}"
            );
        }
        federation.shutdown().await.unwrap();
    }
}
