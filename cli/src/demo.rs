//! `schein demo`: three clearing offices (Leipzig, Dresden, Chemnitz) on this machine, with
//! fresh keys and certificates, walking through the voucher flows with the same client code
//! the commands use. Every step states what should happen; the demo exits 0 only if all did.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use schein_node::client::IdentityFile;
use schein_node::local::{LocalFederation, SAXONY};
use schein_node::pki::{NodeCa, Role, Validity};
use schein_proto::v1::{
    Category, ClaimItem, ClaimRecord, ClaimState, ClaimStatusRequest, ClearingRequest,
    ClearingResult, ClearingState, InvalidReason, IssueVoucherRequest, LedgerRequest,
    PeerLedgerRequest, ProviderKind, RevocationReason, Scope, SubmitClaimRequest, Verdict,
    Verification,
};

use crate::Outcome;
use crate::claim::submit;
use crate::client::Client;
use crate::output::{outln, reason_code, verdict_name};
use crate::voucher::{issue, revoke, verify, write_qr};

/// How long the demo's clients wait for a node.
const TIMEOUT: std::time::Duration = schein_node::client::DEFAULT_TIMEOUT;

/// Counts the steps and those that did not behave as expected.
#[derive(Default)]
struct Steps {
    done: usize,
    failed: usize,
}

impl Steps {
    fn report(&mut self, title: &str, ok: bool, detail: &str) {
        self.done += 1;
        let mark = if ok { "ok " } else { "FAILED" };
        outln!("\n[{mark}] {}. {title}", self.done);
        for line in detail.lines() {
            outln!("       {line}");
        }
        if !ok {
            self.failed += 1;
        }
    }

    fn verdict(
        &mut self,
        title: &str,
        result: anyhow::Result<Verification>,
        verdict: Verdict,
        reasons: &[InvalidReason],
    ) {
        match result {
            Ok(v) => {
                let ok =
                    v.verdict() == verdict && (reasons.is_empty() || reasons.contains(&v.reason()));
                let reason = reason_code(v.reason())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let detail = format!("{}{reason}: {}", verdict_name(v.verdict()), v.message);
                self.report(title, ok, &detail);
            }
            Err(error) => self.report(title, false, &format!("error: {error:#}")),
        }
    }

    fn claim(&mut self, title: &str, result: anyhow::Result<ClaimRecord>, expected: ClaimState) {
        match result {
            Ok(claim) => {
                let receipt = if claim.issuer_ledger_seq > 0 {
                    format!(
                        " (signed receipt: entry {} of the issuer's ledger)",
                        claim.issuer_ledger_seq
                    )
                } else {
                    String::new()
                };
                let detail = format!("{}{receipt}", claim.message);
                self.report(title, claim.state() == expected, &detail);
            }
            Err(error) => self.report(title, false, &format!("error: {error:#}")),
        }
    }

    fn refused<T>(&mut self, title: &str, result: anyhow::Result<T>) {
        match result {
            Ok(_) => self.report(title, false, "it was accepted"),
            Err(error) => self.report(title, true, &format!("{error:#}")),
        }
    }
}

/// A claim served today for (fee code, cents) items, one unit each.
fn claim(id: &str, code: &str, kind: ProviderKind, items: &[(&str, i64)]) -> SubmitClaimRequest {
    SubmitClaimRequest {
        claim_id: id.to_owned(),
        code: code.to_owned(),
        service_date: Some(schein_proto::Day::today().into()),
        provider_kind: kind as i32,
        items: items
            .iter()
            .map(|&(fee_code, amount_cents)| ClaimItem {
                fee_code: fee_code.to_owned(),
                count: 1,
                amount_cents,
            })
            .collect(),
        category: Category::Treatment as i32,
    }
}

/// Polls a claim until its receipt is in, for up to 30 s.
async fn settled_eventually(client: &Client, id: &str) -> anyhow::Result<ClaimRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let claim = client
            .provider()
            .claim_status(ClaimStatusRequest {
                claim_id: id.to_owned(),
            })
            .await
            .map_err(|s| client.explain(&s))?
            .into_inner();
        if claim.state() != ClaimState::Pending || std::time::Instant::now() > deadline {
            return Ok(claim);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Fetches and checks a node's ledger; the number of entries.
async fn ledger_check(office: &Client) -> anyhow::Result<u64> {
    let page = office
        .office()
        .ledger(LedgerRequest {
            from_seq: 1,
            limit: 1000,
        })
        .await
        .map_err(|s| office.explain(&s))?
        .into_inner();
    let checked =
        schein_proto::ledger::verify_chain(&page.entries, &page.signed_head, &page.signing_keys)?;
    Ok(checked.entries)
}

/// Changes one character inside the signature part of a full code.
fn tamper(full_code: &str) -> String {
    let mut chars: Vec<char> = full_code.chars().collect();
    let i = chars.len().saturating_sub(20);
    if let Some(c) = chars.get_mut(i) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

/// Changes one character of the serial part of a short code.
fn mistype(short_code: &str) -> String {
    let mut chars: Vec<char> = short_code.chars().collect();
    if let Some(c) = chars.get_mut(5) {
        *c = if *c == '7' { '8' } else { '7' };
    }
    chars.into_iter().collect()
}

pub(crate) async fn run(keep: Option<PathBuf>) -> anyhow::Result<Outcome> {
    let temp;
    let dir = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                return Err(anyhow!(
                    "{} is not empty; give a new directory",
                    dir.display()
                ));
            }
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("cannot make a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    outln!("schein demo: three clearing offices on this machine, each with its own keys and CA.");
    // Each node also serves its web console, on a port of its own.
    let mut federation =
        LocalFederation::start_with(&dir, &SAXONY, &[("web_listen", "127.0.0.1:0")])
            .await
            .context("cannot start the local federation")?;
    for node in &federation.nodes {
        outln!(
            "  {:<9} node at https://{}  (short codes {}-…), web console {}",
            node.city.name,
            node.addr,
            node.city.prefix,
            node.web_addr()
                .map(|a| format!("https://localhost:{}/", a.port()))
                .unwrap_or_else(|| "off".into())
        );
    }
    let mut steps = Steps::default();
    let result = walk_through(&mut federation, &mut steps, &dir).await;
    if let Err(error) = &result {
        steps.report(
            "the walk-through could not go on",
            false,
            &format!("{error:#}"),
        );
    }

    if let (Some(dir), Ok(())) = (&keep, &result) {
        keep_running(dir, &federation)?;
        tokio::signal::ctrl_c().await.ok();
        outln!("\nstopping the nodes");
    }
    federation
        .shutdown()
        .await
        .context("the nodes did not shut down cleanly")?;
    steps.report(
        "All three nodes shut down cleanly",
        true,
        "connections drained, storage flushed",
    );
    outln!(
        "\n{} steps, {} as expected.",
        steps.done,
        steps.done - steps.failed
    );
    if steps.failed > 0 {
        return Err(anyhow!(
            "{} step(s) did not behave as expected",
            steps.failed
        ));
    }
    Ok(Outcome::Done)
}

async fn walk_through(
    federation: &mut LocalFederation,
    steps: &mut Steps,
    dir: &Path,
) -> anyhow::Result<()> {
    let leipzig_office =
        Client::from_identity(federation.office("leipzig")?, None, TIMEOUT).await?;
    let dresden_office =
        Client::from_identity(federation.office("dresden")?, None, TIMEOUT).await?;
    let dresden_practice = Client::from_identity(
        federation.enroll("dresden", Role::Provider, "praxis-neustadt")?,
        None,
        TIMEOUT,
    )
    .await?;
    let chemnitz_pharmacy = Client::from_identity(
        federation.enroll("chemnitz", Role::Provider, "apotheke-zentrum")?,
        None,
        TIMEOUT,
    )
    .await?;

    let voucher = issue(
        &leipzig_office,
        IssueVoucherRequest {
            scope: vec![Scope::Medication as i32],
            ..Default::default()
        },
    )
    .await?;
    let card = dir.join("leipzig-voucher.svg");
    write_qr(&voucher.full_code, &card)?;
    steps.report(
        "The Leipzig clearing office issues a voucher (no name, no birth date: only a random serial)",
        true,
        &format!(
            "short code {}\nfull code  {}…  ({} characters, QR code in {})",
            voucher.short_code,
            &voucher.full_code[..40.min(voucher.full_code.len())],
            voucher.full_code.len(),
            card.display()
        ),
    );

    steps.verdict(
        "A Dresden practice scans the QR code; Dresden's node checks the signature and asks Leipzig",
        verify(&dresden_practice, &voucher.full_code, None).await,
        Verdict::Valid,
        &[],
    );
    steps.verdict(
        "A Chemnitz pharmacy types the short code, for medication",
        verify(
            &chemnitz_pharmacy,
            &voucher.short_code,
            Some(Scope::Medication),
        )
        .await,
        Verdict::Valid,
        &[],
    );
    steps.verdict(
        "The same voucher is not good for dental care",
        verify(&chemnitz_pharmacy, &voucher.short_code, Some(Scope::Dental)).await,
        Verdict::Invalid,
        &[InvalidReason::OutOfScope],
    );
    steps.verdict(
        "A tampered full code (one character changed) is rejected",
        verify(&dresden_practice, &tamper(&voucher.full_code), None).await,
        Verdict::Invalid,
        &[InvalidReason::BadSignature],
    );
    steps.verdict(
        "A mistyped short code is caught by its check character",
        verify(&dresden_practice, &mistype(&voucher.short_code), None).await,
        Verdict::Invalid,
        &[InvalidReason::CheckCharacter],
    );
    steps.refused(
        "Dresden's office cannot revoke Leipzig's voucher",
        revoke(&dresden_office, &voucher.short_code, RevocationReason::Lost).await,
    );
    steps.refused(
        "A Dresden practice cannot issue vouchers",
        issue(&dresden_practice, IssueVoucherRequest::default()).await,
    );

    let revoked = revoke(&leipzig_office, &voucher.short_code, RevocationReason::Lost).await;
    steps.report(
        "The card is reported lost; Leipzig's office revokes the voucher",
        revoked.is_ok(),
        &match &revoked {
            Ok(record) => format!("{} revoked", record.short_code),
            Err(error) => format!("{error:#}"),
        },
    );
    steps.verdict(
        "The revoked voucher is rejected in Dresden",
        verify(&dresden_practice, &voucher.full_code, None).await,
        Verdict::Invalid,
        &[InvalidReason::Revoked],
    );

    let foreign = foreign_identity(federation)?;
    let attempt = async {
        let client = Client::from_identity(foreign, None, TIMEOUT).await?;
        verify(&client, &voucher.short_code, None).await
    };
    steps.refused(
        "A certificate from a CA outside the roster is refused at the handshake",
        attempt.await,
    );

    let second = issue(&leipzig_office, IssueVoucherRequest::default()).await?;
    let chemnitz_hospital = Client::from_identity(
        federation.enroll("chemnitz", Role::Provider, "klinikum")?,
        None,
        TIMEOUT,
    )
    .await?;
    steps.claim(
        "The Dresden practice bills a consultation and an examination on the Leipzig voucher; Leipzig settles it",
        submit(&dresden_practice, claim("demo-1", &second.short_code, ProviderKind::Practice, &[("GOAE-1", 466), ("GOAE-5", 466)])).await,
        ClaimState::Settled,
    );
    steps.claim(
        "A Chemnitz hospital bills a day of care (EUR 600) on the same voucher: over its EUR 500 cap, rejected",
        submit(&chemnitz_hospital, claim("demo-2", &second.short_code, ProviderKind::Hospital, &[("KH-TAG", 60_000)])).await,
        ClaimState::Rejected,
    );
    let emergency = issue(
        &leipzig_office,
        IssueVoucherRequest {
            emergency: true,
            bound_provider: "chemnitz/klinikum".into(),
            ..Default::default()
        },
    )
    .await?;
    steps.report(
        "Leipzig's office on call issues an emergency voucher for the Chemnitz hospital",
        emergency.emergency && emergency.bound_provider == "chemnitz/klinikum",
        &format!(
            "{}: emergency, bound to {}",
            emergency.short_code, emergency.bound_provider
        ),
    );
    steps.verdict(
        "The Dresden practice checks it: bound to another provider, not for them",
        verify(&dresden_practice, &emergency.full_code, None).await,
        Verdict::Invalid,
        &[InvalidReason::BoundElsewhere],
    );
    steps.verdict(
        "The Chemnitz hospital checks it: valid, for them",
        verify(&chemnitz_hospital, &emergency.short_code, None).await,
        Verdict::Valid,
        &[],
    );
    steps.refused(
        "An emergency voucher for a provider nobody enrolled is refused",
        issue(
            &leipzig_office,
            IssueVoucherRequest {
                emergency: true,
                bound_provider: "chemnitz/no-such-hospital".into(),
                ..Default::default()
            },
        )
        .await,
    );
    federation.stop("leipzig").await?;
    steps.verdict(
        "Leipzig's node is down: the QR code still proves the signature, but the status is unknown",
        verify(&dresden_practice, &second.full_code, None).await,
        Verdict::StatusUnknown,
        &[],
    );
    steps.verdict(
        "Leipzig's node is down: a short code cannot be checked at all",
        verify(&dresden_practice, &second.short_code, None).await,
        Verdict::IssuerUnreachable,
        &[],
    );
    steps.claim(
        "While Leipzig is down, the Dresden practice bills a follow-up visit: stored, waiting in Dresden's outbox",
        submit(&dresden_practice, claim("demo-3", &second.full_code, ProviderKind::Practice, &[("GOAE-3", 874)])).await,
        ClaimState::Pending,
    );
    federation.restart("leipzig").await?;
    steps.verdict(
        "Leipzig's node is back with its data: the voucher checks out again",
        verify(&dresden_practice, &second.short_code, None).await,
        Verdict::Valid,
        &[],
    );
    steps.claim(
        "Dresden's outbox delivers the waiting claim: settled once, now that Leipzig is back",
        settled_eventually(&dresden_practice, "demo-3").await,
        ClaimState::Settled,
    );
    for (city, office) in [("Leipzig", &leipzig_office), ("Dresden", &dresden_office)] {
        let checked = ledger_check(office).await;
        steps.report(
            &format!("{city}'s ledger: every entry holds the hash of the one before, and the node signed its head"),
            checked.is_ok(),
            &match checked {
                Ok(entries) => format!("{entries} entries check out"),
                Err(error) => format!("{error:#}"),
            },
        );
    }
    let witnessed = dresden_office
        .office()
        .peer_ledger(PeerLedgerRequest {
            node: "leipzig".into(),
        })
        .await
        .map_err(|s| dresden_office.explain(&s));
    steps.report(
        "Dresden holds Leipzig to its past: Leipzig's whole ledger still holds every receipt it gave Dresden (what `schein ledger verify --peer leipzig` checks)",
        witnessed.as_ref().is_ok_and(|c| c.get_ref().findings.is_empty() && c.get_ref().receipts_checked > 0),
        &match &witnessed {
            Ok(check) if check.get_ref().findings.is_empty() => format!(
                "{} entries chained, {} receipts unchanged",
                check.get_ref().entries,
                check.get_ref().receipts_checked
            ),
            Ok(check) => check.get_ref().findings.join("; "),
            Err(error) => format!("{error:#}"),
        },
    );
    let period = schein_proto::period::Period::containing(
        schein_proto::Day::today().month().unwrap_or_default(),
    )[1]
    .to_string();
    let funder = Client::from_identity(
        federation.enroll("leipzig", Role::Funder, "land-sachsen")?,
        None,
        TIMEOUT,
    )
    .await?;
    outln!();
    let (reports, missing) = crate::report::fetch_all(&funder, &period).await?;
    crate::report::print_table(&reports, &missing);
    steps.report(
        &format!("A funder of the Land asks all three cities for {period}: aggregates only, as of the end of last week"),
        reports.len() == 3 && missing.is_empty(),
        "this week's claims reach funders from Monday on, all at once, so that two reports never single out one claim; cells of fewer than 5 vouchers are suppressed",
    );
    let own = crate::report::fetch(&leipzig_office, &period).await?;
    crate::report::print_table(std::slice::from_ref(&own), &[]);
    steps.report(
        &format!("Leipzig's office reads its own report for {period}: live, small cells suppressed"),
        own.settled.as_ref().is_some_and(|c| c.suppressed),
        "a handful of vouchers: every cell built from fewer than 5 is suppressed, also for the office",
    );
    clearing_steps(
        federation,
        steps,
        &leipzig_office,
        &dresden_practice,
        &period,
    )
    .await
}

async fn close(office: &Client, period: &str) -> anyhow::Result<ClearingResult> {
    Ok(office
        .office()
        .close_clearing(ClearingRequest {
            period: period.to_owned(),
        })
        .await
        .map_err(|s| office.explain(&s))?
        .into_inner())
}

/// Closing periods: one whose deadline has passed, and the current one, early, with two office
/// identities; afterwards the period refuses new claims.
async fn clearing_steps(
    federation: &LocalFederation,
    steps: &mut Steps,
    leipzig_office: &Client,
    dresden_practice: &Client,
    period: &str,
) -> anyhow::Result<()> {
    let today = schein_proto::Day::today();
    let past = today
        .checked_add_days(-200)
        .and_then(|day| day.month())
        .map(|month| schein_proto::period::Period::containing(month)[1].to_string())
        .unwrap_or_default();
    let closed = close(leipzig_office, &past).await;
    steps.report(
        &format!(
            "Leipzig closes {past}: its claim deadline has passed, so one office identity suffices"
        ),
        closed
            .as_ref()
            .is_ok_and(|c| c.state() == ClearingState::Closed && !c.early),
        &match &closed {
            Ok(result) => result.message.clone(),
            Err(error) => format!("{error:#}"),
        },
    );
    let first = close(leipzig_office, period).await;
    steps.report(
        &format!("Closing {period} now is early: one office identity is not enough, and it is told what would be refused"),
        first
            .as_ref()
            .is_ok_and(|c| c.state() == ClearingState::AwaitingSecondOffice),
        &match &first {
            Ok(result) => result.message.clone(),
            Err(error) => format!("{error:#}"),
        },
    );
    let second = Client::from_identity(
        federation.enroll("leipzig", Role::Office, "team-2")?,
        None,
        TIMEOUT,
    )
    .await?;
    let clearing = close(&second, period).await?;
    crate::report::print_clearing(&clearing, &crate::output::Output { json: false });
    let agreed = clearing
        .pairs
        .iter()
        .all(|p| p.reached && p.agreed && p.closed);
    steps.report(
        &format!(
            "A second office identity closes {period}: Dresden and Chemnitz record the close, and their signed statements match Leipzig's books"
        ),
        agreed && clearing.pairs.len() == 2 && clearing.state() == ClearingState::Closed,
        &format!(
            "net position of Leipzig: {} (it owes what its vouchers cost elsewhere)",
            schein_proto::money::Cents(clearing.net_position_cents)
        ),
    );
    let late = issue(leipzig_office, IssueVoucherRequest::default()).await?;
    steps.refused(
        &format!("Dresden now refuses a new claim on a Leipzig voucher for {period} at once"),
        submit(
            dresden_practice,
            claim(
                "demo-late",
                &late.short_code,
                ProviderKind::Practice,
                &[("GOAE-1", 466)],
            ),
        )
        .await,
    );
    lost_laptop(federation, steps, &late.short_code).await
}

/// A practice laptop is lost: Dresden's operator revokes its identity
/// (`schein-node identity revoke`), and the laptop's next call is refused, on the connection it
/// already had open.
async fn lost_laptop(
    federation: &LocalFederation,
    steps: &mut Steps,
    code: &str,
) -> anyhow::Result<()> {
    let laptop = Client::from_identity(
        federation.enroll("dresden", Role::Provider, "praxis-laptop")?,
        None,
        TIMEOUT,
    )
    .await?;
    let before = verify(&laptop, code, None).await;
    let revoked = schein_node::enrolled::revoke(
        &federation.node("dresden")?.dir,
        "provider/praxis-laptop",
        schein_proto::Day::today(),
    )?;
    // The node looks at its register every second.
    let mut after = verify(&laptop, code, None).await;
    for _ in 0..50 {
        if after.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = verify(&laptop, code, None).await;
    }
    steps.report(
        "A practice laptop is lost: Dresden's operator revokes its identity, and its next call is refused at once, on the connection it had open",
        before.is_ok() && revoked.len() == 1 && after.is_err(),
        &match after {
            Err(error) => format!("{error:#}"),
            Ok(_) => "it was still served".into(),
        },
    );
    Ok(())
}

/// A provider identity for Dresden's node, signed by a CA that no member knows.
fn foreign_identity(federation: &LocalFederation) -> anyhow::Result<IdentityFile> {
    let genuine = federation.enroll("dresden", Role::Provider, "template")?;
    let (rogue_ca, _) = NodeCa::generate("dresden")?;
    let cert =
        rogue_ca.issue_client_cert(Role::Provider, "impostor", Validity::days_from_now(30))?;
    Ok(IdentityFile {
        name: "impostor".into(),
        certificate: cert.cert_pem,
        private_key: cert.key_pem,
        ..genuine
    })
}

fn keep_running(dir: &Path, federation: &LocalFederation) -> anyhow::Result<()> {
    let id = |node: &str, file: &str| dir.join(node).join("identities").join(file);
    outln!("\nThe three nodes keep running until Ctrl-C. Their web consoles:");
    for node in &federation.nodes {
        if let Some(addr) = node.web_addr() {
            outln!("  {:<9} https://localhost:{}/", node.city.name, addr.port());
        }
    }
    outln!("Their metrics and health checks (plain HTTP, /metrics, /healthz, /readyz):");
    for node in &federation.nodes {
        if let Some(addr) = node.metrics_addr() {
            outln!("  {:<9} http://{addr}/metrics", node.city.name);
        }
    }
    outln!(
        "\nSign in with a browser: import one of these certificate files (double-click it, or in"
    );
    outln!(
        "Firefox: Settings → Privacy & Security → View Certificates → Your Certificates → Import),"
    );
    outln!(
        "enter its password, and open the console named with it. The consoles use each node's own"
    );
    outln!("CA: the browser warns about the certificate until that CA is trusted.");
    for (node, file, what) in [
        (
            "chemnitz",
            "office-office",
            "Chemnitz's clearing office: issue a voucher and print its card",
        ),
        (
            "dresden",
            "provider-praxis-neustadt",
            "a Dresden practice: check the card's code and bill",
        ),
        (
            "leipzig",
            "funder-land-sachsen",
            "the Land's funder: the dashboard, at any node's console",
        ),
    ] {
        let identity = schein_node::client::IdentityFile::load(&id(node, &format!("{file}.toml")))?;
        let password = schein_node::p12::Password::generate();
        let path = id(node, &format!("{file}.p12"));
        schein_node::p12::write_new(&identity, password.as_str(), &path)?;
        let console = federation
            .node(node)
            .ok()
            .and_then(|n| n.web_addr())
            .map(|a| format!("https://localhost:{}/", a.port()))
            .unwrap_or_default();
        outln!("\n  {what}");
        outln!("    file      {}", path.display());
        outln!("    password  {}", password.as_str());
        outln!("    console   {console}");
    }
    outln!("\nOr in another terminal:\n");
    outln!("  # as Leipzig's clearing office");
    outln!(
        "  export SCHEIN_IDENTITY={}",
        id("leipzig", "office-office.toml").display()
    );
    outln!("  schein voucher issue --scope medication --qr card.svg");
    outln!("  schein voucher list");
    outln!("\n  # as a Dresden practice (use the short code printed by issue)");
    outln!(
        "  SCHEIN_IDENTITY={} schein voucher verify LEJ-....-....-....-....-.",
        id("dresden", "provider-praxis-neustadt.toml").display()
    );
    outln!("\n  # as a funder: the federation's report for this quarter");
    outln!(
        "  SCHEIN_IDENTITY={} schein report --period PERIOD --federation --svg chart.svg",
        id("leipzig", "funder-land-sachsen.toml").display()
    );
    outln!("\n  (Leipzig's two office identities closed this quarter early in the demo: claims");
    outln!("  between Leipzig and the other cities for services in this quarter are refused as");
    outln!("  'period closed'. Claims between Dresden and Chemnitz still go through.)");
    outln!(
        "\nAfter Ctrl-C, each node can be started again with\n  schein-node --config {} run",
        dir.join("leipzig").join("schein-node.toml").display()
    );
    Ok(())
}
