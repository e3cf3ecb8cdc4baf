//! The web console in a real browser. Leipzig and Dresden run as `schein-node` processes with
//! their consoles on; headless Chromium (installed by the harness if missing) signs in with the
//! `.p12` files `enroll` wrote: Leipzig's office, a Dresden practice and a funder of Leipzig.
//! `tests/browser/console.mjs` walks through the pages (see there); this test checks what it
//! reports against the nodes themselves: the QR code on the card is the voucher's full code,
//! the card prints on one page, a forged cross-site form changes nothing, the claim billed in
//! the browser is settled at the node, the CSV is the node's report, axe finds nothing, and
//! with Leipzig stopped the practice is told the voucher cannot be checked now.
//!
//! Screenshots of every page go to `target/debug/screenshots/console/` (the README's pictures
//! in `docs/console/` are copies of them).

use std::path::PathBuf;

use schein_node::init::enroll_with_p12;
use schein_node::pki::Role;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{ReportRequest, ShowVoucherRequest, VoucherState};
use schein_tests::browser;
use schein_tests::process::{ProcessFederation, free_port};
use serde_json::Value;

fn field<'a>(results: &'a Value, name: &str) -> &'a str {
    results[name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offices_practices_and_funders_work_in_the_browser() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    let mut consoles = Vec::new();
    for node in &mut federation.nodes {
        let port = free_port().unwrap();
        node.env
            .push(("SCHEIN_WEB_LISTEN".into(), format!("127.0.0.1:{port}")));
        // The nodes' certificates name `localhost` (ProcessFederation), which the browser's
        // client-certificate proxy checks.
        consoles.push(format!("https://localhost:{port}"));
    }
    federation.start_all().await.unwrap();
    let (leipzig, dresden) = (federation.node("leipzig"), federation.node("dresden"));

    let files = tempfile::tempdir().unwrap();
    let enrolled = |node: &schein_tests::process::NodeProcess, role: Role, name: &str| {
        let out = files.path().join(format!("{}-{role}-{name}.toml", node.id));
        enroll_with_p12(&node.config().unwrap(), role, name, 30, &out).unwrap()
    };
    let office = enrolled(leipzig, Role::Office, "empfang");
    let practice = enrolled(dresden, Role::Provider, "praxis-neustadt");
    let funder = enrolled(leipzig, Role::Funder, "land-sachsen");
    let second = enrolled(leipzig, Role::Office, "zweite");
    let cas: PathBuf = files.path().join("cas.pem");
    std::fs::write(
        &cas,
        [leipzig, dresden]
            .iter()
            .map(|n| std::fs::read_to_string(n.dir.join("keys/ca.pem")).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    let screenshots = browser::screenshot_dir("console").unwrap();
    let mut env = vec![
        ("SCHEIN_LEIPZIG", consoles[0].clone()),
        ("SCHEIN_DRESDEN", consoles[1].clone()),
        ("NODE_EXTRA_CA_CERTS", cas.display().to_string()),
        ("SCHEIN_SCREENSHOTS", screenshots.display().to_string()),
    ];
    for (p12, password, enrollment) in [
        ("SCHEIN_OFFICE_P12", "SCHEIN_OFFICE_PASSWORD", &office),
        ("SCHEIN_PRACTICE_P12", "SCHEIN_PRACTICE_PASSWORD", &practice),
        ("SCHEIN_FUNDER_P12", "SCHEIN_FUNDER_PASSWORD", &funder),
        ("SCHEIN_SECOND_P12", "SCHEIN_SECOND_PASSWORD", &second),
    ] {
        env.push((p12, enrollment.p12_path.display().to_string()));
        env.push((password, enrollment.password.as_str().to_owned()));
    }

    let mut main = env.clone();
    main.push(("SCHEIN_PHASE", "main".into()));
    let results = browser::run_script("console.mjs".as_ref(), &main)
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&results).unwrap());

    // No certificate: the help page, in German and English.
    assert_eq!(results["help_status"], 401);
    assert!(field(&results, "help_heading").contains("Zertifikat benötigt"));

    // The card: its QR code is the voucher's full code, as the node stores it. No page address
    // carries the code (a shared PC's history keeps addresses with the minute).
    let short_code = field(&results, "short_code").to_owned();
    assert!(short_code.starts_with("LEJ-"), "{short_code}");
    for url in ["issued_url", "voucher_url"] {
        let url = field(&results, url);
        assert!(
            url.contains("?h=") && !url.contains(&short_code[4..8]),
            "{url}"
        );
    }
    let mut office_rpc = OfficeClient::new(office.identity.connect(None).await.unwrap());
    let stored = office_rpc
        .show_voucher(ShowVoucherRequest {
            code: short_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        field(&results, "qr"),
        stored.full_code,
        "the card's QR code"
    );
    assert_eq!(results["card_pages"], 1, "the card prints on one page");

    // The forged cross-site form: refused, and no voucher was issued by it.
    assert_eq!(results["forged_status"], 403);
    assert!(field(&results, "forged_text").contains("Nichts wurde geändert"));
    assert_eq!(results["listed_before"], results["listed_after"]);
    assert_eq!(
        results["listed_after"], 1,
        "only the voucher issued on purpose"
    );

    // The practice: mistyped, valid, billed, listed, revoked.
    assert!(
        field(&results, "live_mistyped").contains("Vertippt"),
        "{results}"
    );
    assert_eq!(field(&results, "mistyped_verdict"), "UNGÜLTIG");
    assert!(field(&results, "mistyped_reason").contains("Prüfzeichen"));
    assert_eq!(field(&results, "valid_verdict"), "GÜLTIG");
    assert!(field(&results, "valid_facts").contains("Leipzig"));
    assert!(field(&results, "valid_facts").contains("600,00 €"));
    assert_eq!(
        field(&results, "preview_total"),
        "9,32 €",
        "2 × GOAE-1 at 4,66 €"
    );
    assert_eq!(field(&results, "claim_state"), "BEZAHLT");
    assert!(field(&results, "claims_list").contains(&short_code));
    assert_eq!(field(&results, "wrong_role"), "NICHT FÜR SIE");
    // The raised cap: waiting after the first person, listed, applied by the second.
    assert!(
        field(&results, "caps_listed").contains(&short_code),
        "{results}"
    );
    assert!(field(&results, "caps_listed").contains("1.200,00 €"));
    assert_ne!(field(&results, "cap_first"), field(&results, "cap_second"));
    assert_eq!(field(&results, "revoked_state"), "gesperrt");
    assert_eq!(field(&results, "revoked_verdict"), "UNGÜLTIG");
    assert!(field(&results, "revoked_reason").contains("Gesperrt"));
    let stored = office_rpc
        .show_voucher(ShowVoucherRequest {
            code: short_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state(), VoucherState::Revoked);
    assert_eq!(stored.claimed_cents, 932, "the claim billed in the browser");
    let status = field(&results, "status_text");
    assert!(
        status.contains("Dresden") && status.contains("stimmt"),
        "{status}"
    );

    // The office reads its own node's report too (live figures).
    assert!(field(&results, "office_report").starts_with("Bericht – Leipzig"));

    // The funder: a chart with the budget line, and the CSV is the node's report.
    assert!(field(&results, "chart_text").contains("Budget"));
    let year = schein_proto::Day::today()
        .month()
        .map(|m| m / 100)
        .unwrap_or_default();
    let mut reports = ReportsClient::new(funder.identity.connect(None).await.unwrap());
    let report = reports
        .report(ReportRequest {
            period: year.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let csv = field(&results, "csv");
    let issued = report.issued.unwrap_or_default();
    let issued_line = if issued.suppressed {
        format!("leipzig,{year},issued,,,,yes")
    } else {
        format!(
            "leipzig,{year},issued,{},{},{:.2},no",
            issued.count,
            issued.vouchers,
            issued.amount_cents as f64 / 100.0
        )
    };
    assert!(
        csv.lines().any(|l| l == issued_line),
        "{issued_line} in\n{csv}"
    );
    assert!(csv.contains(&format!(
        "leipzig,{year},annual_budget,,,{:.2},no",
        report.annual_budget_cents as f64 / 100.0
    )));
    assert_eq!(
        field(&results, "english_heading"),
        format!("Report – Leipzig {year}")
    );

    // axe finds no violation on any page.
    let violations = results["violations"].as_object().unwrap();
    assert!(
        violations.len() >= 15,
        "every page was checked: {violations:?}"
    );
    for (page, found) in violations {
        assert_eq!(found.as_array().map(Vec::len), Some(0), "{page}: {found}");
    }

    // Leipzig stopped: the short code cannot be checked now.
    federation.node_mut("leipzig").kill().unwrap();
    let funder_cert = files.path().join("funder.pem");
    let funder_key = files.path().join("funder.key");
    std::fs::write(&funder_cert, &funder.identity.certificate).unwrap();
    std::fs::write(&funder_key, &funder.identity.private_key).unwrap();
    let mut down = env;
    down.push(("SCHEIN_FUNDER_CERT", funder_cert.display().to_string()));
    down.push(("SCHEIN_FUNDER_KEY", funder_key.display().to_string()));
    down.push(("SCHEIN_PHASE", "issuer-down".into()));
    down.push(("SCHEIN_SHORT_CODE", short_code));
    let results = browser::run_script("console.mjs".as_ref(), &down)
        .await
        .unwrap();
    assert_eq!(
        field(&results, "verdict"),
        "JETZT NICHT PRÜFBAR",
        "{results}"
    );
    assert_eq!(
        results["violations"]["practice-issuer-down"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}
