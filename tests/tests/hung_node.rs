//! A node that hangs: Leipzig, Dresden and Chemnitz as real `schein-node` processes, and
//! Chemnitz stopped with SIGSTOP (the kernel still accepts its connections, nothing answers —
//! a disk stall or a swapped-out machine). Every caller's wait is bounded: the `schein` binary's
//! federation report returns in time and names Chemnitz, `schein status` against Chemnitz fails
//! in time, a claim on a Chemnitz voucher waits in Dresden's outbox and settles once Chemnitz
//! goes on, and clearing with Chemnitz hung ends in one clear state that closing again
//! completes.

use std::time::{Duration, Instant};

use schein_node::pki::Role;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimState, ClaimStatusRequest, ClearingRequest, ClearingState, IssueVoucherRequest,
};
use schein_tests::books::check_pair;
use schein_tests::claim_request;
use schein_tests::process::{ProcessFederation, schein, text};

/// How long a node waits for another here: short, so that the test does not wait long for the
/// hung node.
const PEER_TIMEOUT_MS: &str = "1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_costs_its_callers_a_bounded_wait() {
    let mut federation = ProcessFederation::create(&[
        ("leipzig", "Leipzig", "LEJ"),
        ("dresden", "Dresden", "DRS"),
        ("chemnitz", "Chemnitz", "CHE"),
    ])
    .unwrap();
    for node in &mut federation.nodes {
        node.env = vec![("SCHEIN_PEER_TIMEOUT_MS".into(), PEER_TIMEOUT_MS.into())];
    }
    federation.start_all().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let funder = federation
        .node("leipzig")
        .enroll(Role::Funder, "land")
        .unwrap();
    let chemnitz_office = federation.node("chemnitz").office().unwrap();
    let provider = federation
        .node("dresden")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let voucher = OfficeClient::new(chemnitz_office.connect(None).await.unwrap())
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap()
        .into_inner();
    let period =
        schein_proto::period::Period::containing(schein_proto::Day::today().month().unwrap())[1]
            .to_string();

    federation.node_mut("chemnitz").pause().unwrap();

    // The federation report: what came back within the bound, and who did not answer.
    let (report, took) = schein(
        &funder,
        files.path(),
        &[
            "--timeout",
            "3",
            "report",
            "--period",
            &period,
            "--federation",
        ],
    )
    .await;
    println!("federation report with Chemnitz hung: {took:.1?}");
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let out = text(&report.stdout);
    assert!(out.contains("2 of 3 nodes answered"), "{out}");
    assert!(out.contains("Not answered in time: chemnitz"), "{out}");
    assert!(
        text(&report.stderr).contains("chemnitz"),
        "progress names it"
    );

    // `schein status` against the hung node: a clear failure, in time.
    let (status, took) = schein(
        &chemnitz_office,
        files.path(),
        &["--timeout", "2", "status"],
    )
    .await;
    println!("status against the hung node: {took:.1?}");
    assert_eq!(status.status.code(), Some(1), "{}", text(&status.stdout));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        text(&status.stderr).contains("within 2 s"),
        "{}",
        text(&status.stderr)
    );

    // A claim on a Chemnitz voucher waits in Dresden's outbox ...
    let mut practice = ProviderClient::new(provider.connect(None).await.unwrap());
    let started = Instant::now();
    let claim = practice
        .submit_claim(claim_request(
            "while-hung",
            &voucher.full_code,
            &[("GOAE-1", 1, 466)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    println!("claim with the issuer hung: {:.1?}", started.elapsed());
    assert_eq!(claim.state(), ClaimState::Pending, "{}", claim.message);

    // ... and clearing with Chemnitz hung leaves the period in one clear state.
    let mut leipzig = OfficeClient::new(
        federation
            .node("leipzig")
            .office()
            .unwrap()
            .connect(None)
            .await
            .unwrap(),
    );
    let past = schein_proto::period::Period::containing(
        schein_proto::Day::today()
            .checked_add_days(-200)
            .unwrap()
            .month()
            .unwrap(),
    )[1];
    let request = ClearingRequest {
        period: past.to_string(),
    };
    let started = Instant::now();
    let half = leipzig
        .close_clearing(request.clone())
        .await
        .unwrap()
        .into_inner();
    println!("clearing with Chemnitz hung: {:.1?}", started.elapsed());
    assert_eq!(half.state(), ClearingState::Closing, "{half:?}");
    let with_chemnitz = half.pairs.iter().find(|p| p.peer == "chemnitz").unwrap();
    assert!(
        !with_chemnitz.closed && !with_chemnitz.note.is_empty(),
        "{with_chemnitz:?}"
    );
    let with_dresden = half.pairs.iter().find(|p| p.peer == "dresden").unwrap();
    assert!(
        with_dresden.closed && with_dresden.agreed,
        "{with_dresden:?}"
    );
    let shown = leipzig
        .show_clearing(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.state(), ClearingState::Closing, "show tells the same");

    federation.node_mut("chemnitz").resume().unwrap();

    // Chemnitz goes on: the claim settles, once, and closing again completes the period.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let claim = practice
            .claim_status(ClaimStatusRequest {
                claim_id: "while-hung".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if claim.state() != ClaimState::Pending {
            assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
            break;
        }
        assert!(Instant::now() < deadline, "the claim never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let books = check_pair(
        federation.node("chemnitz"),
        federation.node("dresden"),
        &provider,
        &["while-hung".to_owned()],
    )
    .await
    .unwrap();
    assert_eq!((books.settled, books.lost, books.doubled), (1, 0, 0));
    let done = leipzig.close_clearing(request).await.unwrap().into_inner();
    assert_eq!(done.state(), ClearingState::Closed, "{done:?}");
    assert!(done.pairs.iter().all(|p| p.closed && p.reached && p.agreed));
}
