//! The `schein` binary as offices and providers use it, against a real local federation: human
//! and JSON output, exit codes, and clear sentences for failures.

use std::path::Path;
use std::process::Output;

use schein_node::local::{LocalFederation, SAXONY};
use schein_node::pki::Role;

async fn schein(identity: Option<&Path>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_schein"));
    command
        .env_remove("SCHEIN_IDENTITY")
        .env_remove("SCHEIN_ENDPOINT");
    if let Some(identity) = identity {
        command.arg("--identity").arg(identity);
    }
    command.args(args).output().await.expect("run schein")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn office_and_provider_work_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut federation = LocalFederation::start(dir.path(), &SAXONY).await.unwrap();
    let office = dir.path().join("leipzig/identities/office-office.toml");
    federation
        .enroll("dresden", Role::Provider, "praxis")
        .unwrap();
    let provider = dir.path().join("dresden/identities/provider-praxis.toml");

    let status = schein(Some(&office), &["status"]).await;
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("accepts you as office"));

    let qr = dir.path().join("card.svg");
    let issued = schein(
        Some(&office),
        &[
            "--json",
            "voucher",
            "issue",
            "--cap",
            "250.50",
            "--scope",
            "medication",
            "--qr",
            qr.to_str().unwrap(),
        ],
    )
    .await;
    assert!(issued.status.success(), "{}", stderr(&issued));
    let record: serde_json::Value = serde_json::from_str(&stdout(&issued)).unwrap();
    assert_eq!(record["cap_cents"], 25_050);
    assert_eq!(record["state"], "active");
    let short = record["short_code"].as_str().unwrap().to_owned();
    let full = record["full_code"].as_str().unwrap().to_owned();
    assert!(std::fs::read_to_string(&qr).unwrap().contains("<svg"));

    let human = schein(Some(&provider), &["voucher", "verify", &short]).await;
    assert_eq!(human.status.code(), Some(0), "{}", stderr(&human));
    assert!(stdout(&human).starts_with("VALID: "), "{}", stdout(&human));
    let json = schein(
        Some(&provider),
        &["--json", "voucher", "verify", &full, "--for", "medication"],
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(answer["verdict"], "valid");
    assert_eq!(answer["voucher"]["remaining_cap_cents"], 25_050);

    let mut typo: Vec<char> = short.chars().collect();
    typo[6] = if typo[6] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    let wrong = schein(Some(&provider), &["voucher", "verify", &typo]).await;
    assert_eq!(wrong.status.code(), Some(3), "invalid voucher: exit 3");
    assert!(stdout(&wrong).starts_with("INVALID: "));

    let forbidden = schein(Some(&provider), &["voucher", "issue"]).await;
    assert_eq!(forbidden.status.code(), Some(1));
    assert!(
        stderr(&forbidden).contains("only clearing office staff"),
        "{}",
        stderr(&forbidden)
    );

    let listed = schein(Some(&office), &["voucher", "list"]).await;
    assert!(stdout(&listed).contains(&short));
    let revoked = schein(
        Some(&office),
        &["voucher", "revoke", &short, "--reason", "lost"],
    )
    .await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let shown = schein(Some(&office), &["voucher", "show", &short]).await;
    assert!(stdout(&shown).contains("revoked"), "{}", stdout(&shown));
    let after = schein(Some(&provider), &["voucher", "verify", &short]).await;
    assert_eq!(after.status.code(), Some(3));
    assert!(stdout(&after).contains("revoked"));

    // A stack of vouchers in one request: answers in order, exit code of the worst one.
    let fresh = schein(Some(&office), &["--json", "voucher", "issue"]).await;
    let fresh: serde_json::Value = serde_json::from_str(&stdout(&fresh)).unwrap();
    let fresh = fresh["full_code"].as_str().unwrap().to_owned();
    let stack = dir.path().join("stack.txt");
    std::fs::write(&stack, format!("# today's patients\n{short}\n\n{fresh}\n")).unwrap();
    let many = schein(
        Some(&provider),
        &["voucher", "verify-many", stack.to_str().unwrap()],
    )
    .await;
    assert_eq!(many.status.code(), Some(3), "{}", stderr(&many));
    // Each answer starts with its verdict; the voucher's facts follow, indented.
    let lines: Vec<String> = stdout(&many)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("INVALID: ") && lines[0].contains("revoked"));
    assert!(lines[1].starts_with("VALID: "), "{lines:?}");
    std::fs::write(&stack, format!("{fresh}\n{fresh}\n")).unwrap();
    let valid = schein(
        Some(&provider),
        &["--json", "voucher", "verify-many", stack.to_str().unwrap()],
    )
    .await;
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    assert_eq!(stdout(&valid).lines().count(), 2);
    std::fs::write(&stack, "# nothing\n").unwrap();
    let empty = schein(
        Some(&provider),
        &["voucher", "verify-many", stack.to_str().unwrap()],
    )
    .await;
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        stderr(&empty).contains("holds no voucher codes"),
        "{}",
        stderr(&empty)
    );

    // A Dresden practice bills on a new Leipzig voucher; retrying with the same id is safe.
    let billed = schein(Some(&office), &["--json", "voucher", "issue"]).await;
    let billed: serde_json::Value = serde_json::from_str(&stdout(&billed)).unwrap();
    let code = billed["short_code"].as_str().unwrap().to_owned();
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let claim_args = [
        "--json",
        "claim",
        "submit",
        "--voucher",
        code.as_str(),
        "--date",
        today.as_str(),
        "--kind",
        "practice",
        "--item",
        "GOAE-1:1:4.66",
        "--item",
        "GOAE-5:1:4,66",
        "--id",
        "visit-1",
    ];
    let submitted = schein(Some(&provider), &claim_args).await;
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let claim: serde_json::Value = serde_json::from_str(&stdout(&submitted)).unwrap();
    assert_eq!(claim["state"], "settled", "{claim}");
    assert_eq!(claim["amount_cents"], 932);
    let again = schein(Some(&provider), &claim_args).await;
    let again: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(again["issuer_ledger_seq"], claim["issuer_ledger_seq"]);
    let too_much = schein(
        Some(&provider),
        &[
            "claim",
            "submit",
            "--voucher",
            code.as_str(),
            "--date",
            today.as_str(),
            "--kind",
            "practice",
            "--item",
            "GOAE-1:1:9.99",
        ],
    )
    .await;
    assert_eq!(too_much.status.code(), Some(1));
    assert!(
        stderr(&too_much).contains("more than the fee schedule allows"),
        "{}",
        stderr(&too_much)
    );
    let bad_item = schein(
        Some(&provider),
        &[
            "claim",
            "submit",
            "--voucher",
            "x",
            "--date",
            today.as_str(),
            "--kind",
            "practice",
            "--item",
            "GOAE-1",
        ],
    )
    .await;
    assert_eq!(bad_item.status.code(), Some(2));
    let listed = schein(Some(&provider), &["claim", "list"]).await;
    assert!(stdout(&listed).contains("visit-1"), "{}", stdout(&listed));
    let status = schein(Some(&provider), &["claim", "status", "visit-1"]).await;
    assert!(stdout(&status).contains("settled"), "{}", stdout(&status));
    let ledger = schein(Some(&office), &["ledger", "verify"]).await;
    assert!(ledger.status.success(), "{}", stderr(&ledger));
    assert!(
        stdout(&ledger).contains("checks out: 1 entries"),
        "{}",
        stdout(&ledger)
    );
    let approved = schein(
        Some(&office),
        &["voucher", "approve", code.as_str(), "--cap", "800"],
    )
    .await;
    assert!(
        stdout(&approved).contains("The cap is now EUR 800.00"),
        "{}",
        stdout(&approved)
    );

    // A funder's federation-wide report, as JSON, CSV and a chart; then the office closes it.
    federation.enroll("leipzig", Role::Funder, "land").unwrap();
    let funder = dir.path().join("leipzig/identities/funder-land.toml");
    let month = time::OffsetDateTime::now_utc().month() as u8;
    let period = format!(
        "{}-Q{}",
        time::OffsetDateTime::now_utc().year(),
        (month - 1) / 3 + 1
    );
    let svg = dir.path().join("spend.svg");
    let report = schein(
        Some(&funder),
        &[
            "--json",
            "report",
            "--period",
            period.as_str(),
            "--federation",
            "--svg",
            svg.to_str().unwrap(),
        ],
    )
    .await;
    assert!(report.status.success(), "{}", stderr(&report));
    let report: serde_json::Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(report["nodes"].as_array().unwrap().len(), 3);
    // A funder's figures end with last week: today's claim is not among them yet.
    assert_eq!(
        report["nodes"][0]["claims_settled"]["count"], 0,
        "released weekly"
    );
    assert!(report["nodes"][0]["released_through"].is_string());
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let csv = schein(
        Some(&funder),
        &["report", "--period", period.as_str(), "--csv"],
    )
    .await;
    assert!(
        stdout(&csv).starts_with("node,period,measure"),
        "{}",
        stdout(&csv)
    );
    let denied = schein(Some(&provider), &["report", "--period", period.as_str()]).await;
    assert_eq!(denied.status.code(), Some(1));
    let bad = schein(Some(&funder), &["report", "--period", "soon"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is not a period"), "{}", stderr(&bad));

    // Issuer down: exit 4, and the sentence says so.
    let second = schein(Some(&office), &["--json", "voucher", "issue"]).await;
    let second: serde_json::Value = serde_json::from_str(&stdout(&second)).unwrap();
    federation.stop("leipzig").await.unwrap();
    let unknown = schein(
        Some(&provider),
        &["voucher", "verify", second["full_code"].as_str().unwrap()],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(4), "{}", stdout(&unknown));
    assert!(stdout(&unknown).contains("could not be reached"));

    // Own node down: a clear sentence, exit 1.
    let down = schein(Some(&office), &["voucher", "list"]).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot reach the node"),
        "{}",
        stderr(&down)
    );
    federation.shutdown().await.unwrap();
}

#[tokio::test]
async fn usage_errors_are_explained() {
    let no_identity = schein(None, &["voucher", "list"]).await;
    assert_eq!(no_identity.status.code(), Some(1));
    assert!(
        stderr(&no_identity).contains("--identity"),
        "{}",
        stderr(&no_identity)
    );

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("identity.toml");
    std::fs::write(&garbage, "this is not an identity").unwrap();
    let unreadable = schein(Some(&garbage), &["voucher", "list"]).await;
    assert_eq!(unreadable.status.code(), Some(1));
    assert!(stderr(&unreadable).contains("cannot read the identity file"));

    let bad_cap = schein(Some(&garbage), &["voucher", "issue", "--cap", "-5"]).await;
    assert_eq!(bad_cap.status.code(), Some(2), "usage errors exit 2");
    let bad_date = schein(
        Some(&garbage),
        &["voucher", "issue", "--valid-until", "31.12.2026"],
    )
    .await;
    assert_eq!(bad_date.status.code(), Some(2));
    assert!(stderr(&bad_date).contains("YYYY-MM-DD"));
}

#[tokio::test]
async fn the_demo_runs_every_step_as_expected() {
    let demo = schein(None, &["demo"]).await;
    assert!(
        demo.status.success(),
        "{}\n{}",
        stdout(&demo),
        stderr(&demo)
    );
    let out = stdout(&demo);
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.contains("as expected."), "{out}");
}
