//! Backup and recovery with real `schein-node` processes: Leipzig issues capped vouchers, the
//! providers of Dresden and Chemnitz claim on them, and Leipzig's operator takes a backup with
//! `schein-node backup` while the claims flow. More claims settle after the backup. Then
//! Leipzig's disk is lost: the process is killed, its data directory removed, the backup
//! restored with `schein-node restore`, and the node started again.
//!
//! The restored Leipzig has forgotten the settlements it made after the backup. It must settle
//! nothing until it has recovered them from both peers: while Chemnitz is down it stays
//! recovering (`schein-node status` says so per peer), refuses a settlement as UNAVAILABLE and
//! a Dresden claim waits in Dresden's outbox; once Chemnitz is back it finishes, and then:
//! every receipt Dresden and Chemnitz hold is Leipzig's again byte for byte (a retried record
//! gets its original receipt), the Dresden claim settles, no voucher goes over its cap (claims
//! that the forgotten settlements would have let through are rejected), the vouchers' spent
//! sums are the sums of the receipts, `schein ledger verify` passes at Leipzig and
//! `schein ledger verify --peer leipzig` at both peers (the rebuilt ledger holds the very
//! entries they witnessed before the loss).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use schein_node::client::IdentityFile;
use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::signed;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ClaimStatusRequest, ErrorReason, HeldReceipt,
    IssueVoucherRequest, LedgerHead, LedgerRequest, Outcome, PeerLedgerRequest, Receipt,
    ReceiptsForRequest, RejectReason, SettleRequest, ShowVoucherRequest, SubmitClaimRequest,
    VoucherRecord,
};
use schein_tests::process::{NodeProcess, ProcessFederation, node_binary, schein, text};
use schein_tests::{FEE_CODES, claim_request};
use tonic::Code;

/// Each voucher's treatment cap, euro cents: small, so that a few claims reach it.
const CAP: i64 = 5_000;
const VOUCHERS: usize = 4;

/// Runs `schein-node ARGS` in `node`'s directory (its configuration); the output.
async fn node_command(node: &NodeProcess, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(node_binary().expect("the schein-node binary"))
        .current_dir(&node.dir)
        .env_remove("SCHEIN_NODE_CONFIG")
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("schein-node ended within a minute")
        .expect("schein-node runs")
}

/// Submits `request` until the redeeming node acknowledges it (a connection may fail).
async fn submit(provider: &IdentityFile, request: SubmitClaimRequest) -> ClaimRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = async {
            let channel = provider.connect(None).await.ok()?;
            ProviderClient::new(channel)
                .submit_claim(request.clone())
                .await
                .ok()
        };
        if let Ok(Some(answer)) = tokio::time::timeout(Duration::from_secs(20), answer).await {
            return answer.into_inner();
        }
        assert!(
            Instant::now() < deadline,
            "claim {} never acknowledged",
            request.claim_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The claim `claim_id` once it is decided (no longer pending).
async fn decided(provider: &IdentityFile, claim_id: &str, within: Duration) -> ClaimRecord {
    let deadline = Instant::now() + within;
    let mut client = ProviderClient::new(provider.connect(None).await.expect("connect"));
    loop {
        let claim = client
            .claim_status(ClaimStatusRequest {
                claim_id: claim_id.into(),
            })
            .await
            .expect("the claim's status")
            .into_inner();
        if claim.state() != ClaimState::Pending {
            return claim;
        }
        assert!(
            Instant::now() < deadline,
            "claim {claim_id} still pending after {within:?}: {}",
            claim.message
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every (record, receipt) of Leipzig that `peer` holds, asked as Leipzig.
async fn held(leipzig_at_peer: &IdentityFile) -> Vec<HeldReceipt> {
    let mut client = FederationClient::new(leipzig_at_peer.connect(None).await.expect("connect"));
    let mut all = Vec::new();
    let mut after = Vec::new();
    loop {
        let page = client
            .receipts_for(ReceiptsForRequest {
                after: after.clone(),
                limit: 5,
            })
            .await
            .expect("the peer's held receipts")
            .into_inner();
        all.extend(page.receipts);
        if page.next.is_empty() {
            return all;
        }
        after = page.next;
    }
}

/// Leipzig's ledger head, as its office reads it.
async fn head(office: &IdentityFile) -> LedgerHead {
    let ledger = OfficeClient::new(office.connect(None).await.expect("connect"))
        .ledger(LedgerRequest {
            from_seq: 1,
            limit: 1,
        })
        .await
        .expect("the ledger")
        .into_inner();
    signed::peek(&ledger.signed_head).expect("a readable head")
}

/// Waits until `peer_office`'s node has witnessed Leipzig's ledger at `seq` without a finding.
async fn witnessed(peer_office: &IdentityFile, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = OfficeClient::new(peer_office.connect(None).await.expect("connect"));
    loop {
        let check = client
            .peer_ledger(PeerLedgerRequest {
                node: "leipzig".into(),
            })
            .await
            .map(tonic::Response::into_inner);
        if let Ok(check) = &check {
            assert!(check.findings.is_empty(), "{:?}", check.findings);
            if check.witnessed_seq == seq {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not witness Leipzig's entry {seq}: {check:?}",
            peer_office.node
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `claim_id` for `voucher` billing fee code `code` (an index into [`FEE_CODES`]).
fn claim(claim_id: &str, voucher: &VoucherRecord, code: usize) -> SubmitClaimRequest {
    let (fee_code, cents) = FEE_CODES[code];
    claim_request(
        claim_id,
        &voucher.full_code,
        &[(fee_code, 1, cents)],
        Category::Treatment,
    )
}

/// A copy of `file` in `dir` with one byte changed; the copy's path.
fn damaged_copy(file: &Path, dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(file).expect("the backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let copy = dir.join("damaged.backup");
    std::fs::write(&copy, bytes).expect("the damaged copy");
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_issuer_recovers_its_settlements_from_its_peers_before_it_settles_again() {
    let mut federation = ProcessFederation::create(&[
        ("leipzig", "Leipzig", "LEJ"),
        ("dresden", "Dresden", "DRS"),
        ("chemnitz", "Chemnitz", "CHE"),
    ])
    .unwrap();
    for node in &mut federation.nodes {
        node.env.extend([
            ("SCHEIN_WITNESS_INTERVAL_SECONDS".into(), "1".into()),
            (
                "SCHEIN_LOG".into(),
                "schein_node::domain::witness=debug,info".into(),
            ),
        ]);
    }
    federation.start_all().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let leipzig_office = federation.node("leipzig").office().unwrap();
    let dresden_office = federation.node("dresden").office().unwrap();
    let chemnitz_office = federation.node("chemnitz").office().unwrap();
    let dresden_practice = federation
        .node("dresden")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let chemnitz_practice = federation
        .node("chemnitz")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let leipzig_at = |peer: &str| {
        federation
            .node("leipzig")
            .node_identity_at(federation.node(peer))
            .unwrap()
    };
    let (leipzig_at_dresden, leipzig_at_chemnitz) = (leipzig_at("dresden"), leipzig_at("chemnitz"));
    let peer_at_leipzig = |peer: &str| {
        federation
            .node(peer)
            .node_identity_at(federation.node("leipzig"))
            .unwrap()
    };
    let (dresden_at_leipzig, chemnitz_at_leipzig) =
        (peer_at_leipzig("dresden"), peer_at_leipzig("chemnitz"));

    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let mut vouchers = Vec::new();
    for _ in 0..VOUCHERS {
        let voucher = office
            .issue_voucher(IssueVoucherRequest {
                cap_cents: Some(CAP),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        vouchers.push(voucher);
    }

    // Claims flow from both cities while the backup is taken: (provider, claim id, voucher,
    // fee code). Per voucher 466 + 874 cents before or around the backup, 1515 + 1282 after:
    // 4,137 of 5,000 cents.
    let around: Vec<(IdentityFile, String, usize, usize)> = (0..VOUCHERS)
        .flat_map(|v| {
            [
                (dresden_practice.clone(), format!("d-a-{v}"), v, 0),
                (chemnitz_practice.clone(), format!("c-a-{v}"), v, 1),
            ]
        })
        .collect();
    let load = {
        let vouchers = vouchers.clone();
        let around = around.clone();
        tokio::spawn(async move {
            for (provider, id, v, code) in around {
                submit(&provider, claim(&id, &vouchers[v], code)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_file = files.path().join("leipzig.backup");
    let backup_started = Instant::now();
    let backup = node_command(
        federation.node("leipzig"),
        &["backup", backup_file.to_str().unwrap()],
    )
    .await;
    assert!(
        backup.status.success(),
        "backup while serving: {}",
        text(&backup.stderr)
    );
    assert!(text(&backup.stdout).contains("backup written"));
    eprintln!(
        "figures: backup while serving under claim load took {:.0?} (command included), {} bytes",
        backup_started.elapsed(),
        std::fs::metadata(&backup_file)
            .map(|m| m.len())
            .unwrap_or(0)
    );
    load.await.unwrap();
    let after: Vec<(IdentityFile, String, usize, usize)> = (0..VOUCHERS)
        .flat_map(|v| {
            [
                (dresden_practice.clone(), format!("d-b-{v}"), v, 4),
                (chemnitz_practice.clone(), format!("c-b-{v}"), v, 7),
            ]
        })
        .collect();
    for (provider, id, v, code) in &after {
        submit(provider, claim(id, &vouchers[*v], *code)).await;
    }
    for (provider, id, _, _) in around.iter().chain(&after) {
        let claim = decided(provider, id, Duration::from_secs(60)).await;
        assert_eq!(
            claim.state(),
            ClaimState::Settled,
            "{id}: {}",
            claim.message
        );
    }
    let before_loss = head(&leipzig_office).await;
    assert_eq!(before_loss.seq, 16, "one ledger entry per claim");
    witnessed(&dresden_office, before_loss.seq).await;
    witnessed(&chemnitz_office, before_loss.seq).await;
    let mut held_before: BTreeMap<String, (Vec<u8>, IdentityFile)> = BTreeMap::new();
    for (at_peer, peer_at_leipzig) in [
        (&leipzig_at_dresden, &dresden_at_leipzig),
        (&leipzig_at_chemnitz, &chemnitz_at_leipzig),
    ] {
        for held in held(at_peer).await {
            let receipt: Receipt = signed::peek(&held.signed_receipt).unwrap();
            held_before.insert(
                format!("{}/{}", receipt.redeemer, receipt.claim_id),
                (held.signed_record.clone(), peer_at_leipzig.clone()),
            );
        }
    }
    assert_eq!(
        held_before.len(),
        16,
        "each peer holds the receipts of its claims"
    );
    let held_receipts: BTreeMap<String, Vec<u8>> = {
        let mut all = BTreeMap::new();
        for at_peer in [&leipzig_at_dresden, &leipzig_at_chemnitz] {
            for held in held(at_peer).await {
                let receipt: Receipt = signed::peek(&held.signed_receipt).unwrap();
                all.insert(
                    format!("{}/{}", receipt.redeemer, receipt.claim_id),
                    held.signed_receipt,
                );
            }
        }
        all
    };

    // The disk is lost.
    let leipzig_data = federation.node("leipzig").dir.join("data");
    federation.node_mut("leipzig").kill().unwrap();
    std::fs::remove_dir_all(&leipzig_data).unwrap();

    // A damaged backup, and one of another node, are refused; nothing is written.
    let damaged = damaged_copy(&backup_file, files.path());
    let refused = node_command(
        federation.node("leipzig"),
        &["restore", damaged.to_str().unwrap()],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("damaged"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!leipzig_data.exists() || std::fs::read_dir(&leipzig_data).unwrap().next().is_none());
    let other = node_command(
        federation.node("dresden"),
        &["restore", backup_file.to_str().unwrap()],
    )
    .await;
    assert!(!other.status.success());
    assert!(
        text(&other.stderr).contains("not of this node"),
        "{}",
        text(&other.stderr)
    );

    let restore_started = Instant::now();
    let restored = node_command(
        federation.node("leipzig"),
        &["restore", backup_file.to_str().unwrap()],
    )
    .await;
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    eprintln!(
        "figures: restore took {:.0?} (command included)",
        restore_started.elapsed()
    );
    let again = node_command(
        federation.node("leipzig"),
        &["restore", backup_file.to_str().unwrap()],
    )
    .await;
    assert!(!again.status.success(), "a second restore over the first");
    assert!(
        text(&again.stderr).contains("not empty"),
        "{}",
        text(&again.stderr)
    );

    // Chemnitz is down: Leipzig starts, gets Dresden's receipts and waits for Chemnitz's.
    federation.node_mut("chemnitz").kill().unwrap();
    federation.start_one("leipzig").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = node_command(federation.node("leipzig"), &["status"]).await;
        assert!(status.status.success(), "{}", text(&status.stderr));
        let status = text(&status.stdout);
        if status.contains("peer dresden: done") && status.contains("peer chemnitz: waiting") {
            break status;
        }
        assert!(Instant::now() < deadline, "recovery progress: {status}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(status.contains("state: recovering"), "{status}");

    // Meanwhile nothing settles: a record sent again is refused for now…
    let (some_record, some_sender) = held_before.values().next().unwrap().clone();
    let refused = FederationClient::new(some_sender.connect(None).await.unwrap())
        .settle(SettleRequest {
            signed_record: some_record,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(reason_of(&refused), Some(ErrorReason::Recovering));
    // …and a new claim waits in Dresden's outbox.
    let waiting = submit(&dresden_practice, claim("d-r-0", &vouchers[0], 5)).await;
    assert_eq!(waiting.state(), ClaimState::Pending, "{}", waiting.message);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = ProviderClient::new(dresden_practice.connect(None).await.unwrap())
        .claim_status(ClaimStatusRequest {
            claim_id: "d-r-0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still.state(),
        ClaimState::Pending,
        "not settled while recovering"
    );

    // Chemnitz is back: Leipzig finishes its recovery and settles again.
    federation.start_one("chemnitz").await.unwrap();
    let back = Instant::now();
    federation
        .node("leipzig")
        .wait_for_log(0, &["recovery finished"], Duration::from_secs(90))
        .await
        .unwrap();
    eprintln!(
        "figures: recovery finished {:.0?} after the last peer was back (its retry interval included)",
        back.elapsed()
    );
    let status = text(
        &node_command(federation.node("leipzig"), &["status"])
            .await
            .stdout,
    );
    eprintln!("leipzig's status after recovery:\n{status}");
    assert!(status.contains("state: serving (recovered)"), "{status}");
    assert!(status.contains("0 appended anew"), "{status}");
    assert!(!status.contains("warning"), "{status}");
    let waited = decided(&dresden_practice, "d-r-0", Duration::from_secs(120)).await;
    assert_eq!(waited.state(), ClaimState::Settled, "{}", waited.message);

    // Every receipt the peers hold is Leipzig's again: the same record sent again gets the
    // original receipt, byte for byte.
    for (key, (record, sender)) in &held_before {
        let again = FederationClient::new(sender.connect(None).await.unwrap())
            .settle(SettleRequest {
                signed_record: record.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            &again.signed_receipt, &held_receipts[key],
            "{key}: the original receipt"
        );
    }

    // Claims that the forgotten settlements would have let through are over the cap now.
    for (v, voucher) in vouchers.iter().enumerate() {
        let id = format!("c-c-{v}");
        submit(&chemnitz_practice, claim(&id, voucher, 3)).await;
        let claim = decided(&chemnitz_practice, &id, Duration::from_secs(60)).await;
        assert_eq!(
            (claim.state(), claim.reason()),
            (ClaimState::Rejected, RejectReason::OverCap),
            "{id}: {}",
            claim.message
        );
    }

    // Each voucher's spent sum is the sum of the accepted receipts the redeemers hold, and
    // within its cap.
    let mut accepted: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut receipts = 0;
    for at_peer in [&leipzig_at_dresden, &leipzig_at_chemnitz] {
        for held in held(at_peer).await {
            let receipt: Receipt = signed::peek(&held.signed_receipt).unwrap();
            receipts += 1;
            if receipt.outcome() == Outcome::Accepted {
                *accepted.entry(receipt.serial.clone()).or_default() += receipt.amount_cents;
            }
        }
    }
    assert_eq!(receipts, 16 + 1 + VOUCHERS, "every claim has its receipt");
    for voucher in &vouchers {
        let shown = office_show(&leipzig_office, &voucher.short_code).await;
        assert!(
            shown.claimed_cents <= CAP,
            "{}: {}",
            voucher.short_code,
            shown.claimed_cents
        );
        let sum: i64 = accepted
            .iter()
            .filter(|(serial, _)| voucher_serial(voucher) == **serial)
            .map(|(_, cents)| *cents)
            .sum();
        assert_eq!(shown.claimed_cents, sum, "{}", voucher.short_code);
    }

    // The ledgers verify: Leipzig's own, and Leipzig's at both peers against what they
    // witnessed before the loss and the receipts they hold.
    let now = head(&leipzig_office).await;
    assert_eq!(now.seq, 16 + 1 + VOUCHERS as u64);
    witnessed(&dresden_office, now.seq).await;
    witnessed(&chemnitz_office, now.seq).await;
    let (own, _) = schein(&leipzig_office, files.path(), &["ledger", "verify"]).await;
    assert!(
        own.status.success(),
        "{}{}",
        text(&own.stdout),
        text(&own.stderr)
    );
    for peer_office in [&dresden_office, &chemnitz_office] {
        let (checked, _) = schein(
            peer_office,
            files.path(),
            &["ledger", "verify", "--peer", "leipzig"],
        )
        .await;
        assert!(
            checked.status.success(),
            "{}: {}{}",
            peer_office.node,
            text(&checked.stdout),
            text(&checked.stderr)
        );
    }
}

/// The serial of a voucher, from its short code.
fn voucher_serial(voucher: &VoucherRecord) -> Vec<u8> {
    schein_proto::ShortCode::parse(&voucher.short_code)
        .expect("a short code Leipzig made")
        .serial()
        .as_bytes()
        .to_vec()
}

/// The voucher as Leipzig's office shows it.
async fn office_show(office: &IdentityFile, code: &str) -> VoucherRecord {
    OfficeClient::new(office.connect(None).await.expect("connect"))
        .show_voucher(ShowVoucherRequest { code: code.into() })
        .await
        .expect("the voucher")
        .into_inner()
}

/// A peer gone for good keeps a restored node recovering until its operator gives it up
/// deliberately; then the node settles again and `status` names the peer given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gone_for_good_is_given_up_only_by_the_operator() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    federation.start_all().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let backup_file = files.path().join("leipzig.backup");
    let leipzig = federation.node("leipzig");
    let backup = node_command(leipzig, &["backup", backup_file.to_str().unwrap()]).await;
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let data = leipzig.dir.join("data");
    federation.node_mut("leipzig").kill().unwrap();
    federation.node_mut("dresden").kill().unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let restore_started = Instant::now();
    let restored = node_command(
        federation.node("leipzig"),
        &["restore", backup_file.to_str().unwrap()],
    )
    .await;
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    eprintln!(
        "figures: restore took {:.0?} (command included)",
        restore_started.elapsed()
    );
    federation.start_one("leipzig").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = text(
        &node_command(federation.node("leipzig"), &["status"])
            .await
            .stdout,
    );
    assert!(status.contains("state: recovering"), "{status}");
    assert!(status.contains("peer dresden: waiting"), "{status}");

    let given_up = node_command(
        federation.node("leipzig"),
        &["recover", "--accept-missing", "dresden"],
    )
    .await;
    assert!(given_up.status.success(), "{}", text(&given_up.stderr));
    assert!(
        text(&given_up.stderr).contains("may be paid a second time"),
        "the operator is warned: {}",
        text(&given_up.stderr)
    );
    federation
        .node("leipzig")
        .wait_for_log(0, &["recovery finished"], Duration::from_secs(60))
        .await
        .unwrap();
    let status = text(
        &node_command(federation.node("leipzig"), &["status"])
            .await
            .stdout,
    );
    assert!(status.contains("state: serving (recovered)"), "{status}");
    assert!(
        status.contains("peer dresden: given up (--accept-missing)"),
        "{status}"
    );
}
