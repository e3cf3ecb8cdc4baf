//! A node that rewrites its own past is caught by its peers' witnesses. Leipzig and Dresden run
//! as real `schein-node` processes and witness each other's ledger heads every second. Leipzig
//! settles two claims from Dresden and one of its own providers' claims; Dresden witnesses
//! Leipzig's head. Then Leipzig's operator, who holds the node's signing key and its disk,
//! lowers the amount of Leipzig's own claim's receipt in the stored ledger, signs it again and
//! recomputes the chain and the head: Leipzig's own `schein ledger verify` still checks out —
//! which is why a signed head alone proves nothing — but Dresden's witness round notices the
//! rewrite by itself, and `schein ledger verify --peer leipzig` at Dresden fails with exit code 8
//! and the head Leipzig signed earlier as proof. A second rewrite, of a receipt Leipzig gave
//! Dresden, is caught by that receipt, and by the next one, which names the hash before it.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use ed25519_dalek::SigningKey;
use prost::Message;
use schein_node::client::IdentityFile;
use schein_node::pki::Role;
use schein_proto::ledger::entry_hash;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimState, IssueVoucherRequest, LedgerEntry, LedgerEvent, LedgerHead,
    PeerLedgerRequest, Receipt, ledger_event,
};
use schein_tests::process::{ProcessFederation, schein, text};
use schein_tests::{FEE_CODES, claim_request};

/// The stored ledger head, as the node keeps it (`node/src/store/ledger.rs`).
#[derive(Clone, PartialEq, prost::Message)]
struct StoredHead {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    hash: Vec<u8>,
}

/// What an operator with the node's key and disk can do while the node is stopped: lower the
/// amount in the receipt of entry `seq`, sign it again with the node's key, and recompute every
/// entry's link and the head, so that the node's own chain checks out again.
fn rewrite_receipt(data_dir: &Path, seq: u64, key: &SigningKey) -> anyhow::Result<()> {
    let db = sled::open(data_dir)?;
    let ledger = db.open_tree("ledger")?;
    let meta = db.open_tree("meta")?;
    let mut entries = ledger
        .iter()
        .values()
        .map(|bytes| Ok(LedgerEntry::decode(bytes?.as_ref())?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(entry) = entries.iter_mut().find(|e| e.seq == seq) else {
        bail!("the ledger has no entry {seq}");
    };
    let Some(ledger_event::Event::Receipt(bytes)) =
        LedgerEvent::decode(entry.event.as_slice())?.event
    else {
        bail!("entry {seq} holds no receipt");
    };
    let mut receipt: Receipt = signed::peek(&bytes)?;
    receipt.amount_cents -= 100;
    entry.event = LedgerEvent {
        event: Some(ledger_event::Event::Receipt(signed::seal(
            Kind::Receipt,
            &receipt,
            key,
        ))),
    }
    .encode_to_vec();
    let mut previous = [0u8; 32];
    for entry in &mut entries {
        entry.prev_hash = previous.to_vec();
        previous = entry_hash(entry);
        ledger.insert(entry.seq.to_be_bytes(), entry.encode_to_vec())?;
    }
    let head = StoredHead {
        seq: entries.len() as u64,
        hash: previous.to_vec(),
    };
    meta.insert("ledger_head", head.encode_to_vec())?;
    db.flush()?;
    Ok(())
}

/// `schein ledger verify --peer leipzig` at Dresden, which must fail with exit code 8; its
/// output.
async fn caught_by_dresden(office: &IdentityFile, dir: &Path) -> String {
    let (caught, _) = schein(office, dir, &["ledger", "verify", "--peer", "leipzig"]).await;
    let out = text(&caught.stdout);
    assert_eq!(
        caught.status.code(),
        Some(8),
        "{out}{}",
        text(&caught.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_rewrites_its_ledger_is_caught_by_its_peers_witness() {
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
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
    let dresden_practice = federation
        .node("dresden")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let leipzig_practice = federation
        .node("leipzig")
        .enroll(Role::Provider, "praxis")
        .unwrap();

    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let voucher = office
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Leipzig's ledger: entries 1 and 2 are receipts for Dresden, 3 and 4 Leipzig's own claim
    // (the receipt, and its arrival at Leipzig as redeemer).
    // Each bills another service: the same one twice would be held as a duplicate.
    for (id, practice, (fee_code, cents)) in [
        ("d-1", &dresden_practice, FEE_CODES[0]),
        ("d-2", &dresden_practice, FEE_CODES[1]),
        ("l-1", &leipzig_practice, FEE_CODES[2]),
    ] {
        let claim = ProviderClient::new(practice.connect(None).await.unwrap())
            .submit_claim(claim_request(
                id,
                &voucher.full_code,
                &[(fee_code, 1, cents)],
                Category::Treatment,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    }

    // Dresden witnesses Leipzig's head at entry 4 by itself, within a few rounds.
    let mut dresden = OfficeClient::new(dresden_office.connect(None).await.unwrap());
    let check = |dresden: &mut OfficeClient<_>| {
        let mut dresden: OfficeClient<tonic::transport::Channel> = dresden.clone();
        async move {
            dresden
                .peer_ledger(PeerLedgerRequest {
                    node: "leipzig".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    federation
        .node("dresden")
        .wait_for_log(
            0,
            &["witnessed a peer's ledger head", "seq=4"],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let before = check(&mut dresden).await;
    assert!(before.findings.is_empty(), "{:?}", before.findings);
    assert_eq!((before.entries, before.witnessed_seq), (4, 4));
    assert_eq!(before.receipts_checked, 2, "both of Dresden's receipts");
    let (verified, _) = schein(
        &dresden_office,
        files.path(),
        &["ledger", "verify", "--peer", "leipzig"],
    )
    .await;
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert!(text(&verified.stdout).contains("checks out"));

    // Leipzig's operator rewrites the receipt of its own claim (entry 3): no receipt Dresden
    // holds names it, only the head Dresden witnessed.
    let leipzig_key = federation.node("leipzig").config().unwrap().signing_key;
    let leipzig_data = federation.node("leipzig").dir.join("data");
    federation.node_mut("leipzig").kill().unwrap();
    rewrite_receipt(&leipzig_data, 3, &leipzig_key).unwrap();
    federation.start_one("leipzig").await.unwrap();

    let (own, _) = schein(&leipzig_office, files.path(), &["ledger", "verify"]).await;
    assert!(
        own.status.success() && text(&own.stdout).contains("checks out"),
        "the rewritten chain is consistent in itself: {}{}",
        text(&own.stdout),
        text(&own.stderr)
    );

    federation
        .node("dresden")
        .wait_for_log(
            0,
            &["a peer's ledger contradicts the head it signed before"],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let out = caught_by_dresden(&dresden_office, files.path()).await;
    assert!(out.contains("does NOT match"), "{out}");
    // What the witness round found by itself, and what the whole check finds again.
    assert!(
        out.contains("the witness round found on")
            && out.contains("its entry 4 is not the one it signed on"),
        "{out}"
    );
    assert!(
        out.contains("entry 4 is not the one it signed to this node on"),
        "{out}"
    );
    assert!(!out.contains("no longer holds the receipt"), "{out}");

    // The proof: a head Leipzig signed, for entry 4, with a hash its ledger no longer has.
    let after = check(&mut dresden).await;
    let leipzig_public = leipzig_key.verifying_key();
    let earlier: LedgerHead =
        signed::open(Kind::LedgerHead, &after.evidence_head, &leipzig_public).unwrap();
    let now: LedgerHead =
        signed::open(Kind::LedgerHead, &after.signed_head, &leipzig_public).unwrap();
    assert_eq!(
        (earlier.node.as_str(), earlier.seq, now.seq),
        ("leipzig", 4, 4)
    );
    assert_ne!(earlier.hash, now.hash);
    assert_eq!(
        after.witnessed_seq, 4,
        "the witnessed head is kept, not replaced"
    );

    // A rewrite of a receipt Leipzig gave Dresden is caught by the receipt itself.
    federation.node_mut("leipzig").kill().unwrap();
    rewrite_receipt(&leipzig_data, 1, &leipzig_key).unwrap();
    federation.start_one("leipzig").await.unwrap();
    let out = caught_by_dresden(&dresden_office, files.path()).await;
    assert!(
        out.contains("entry 1 no longer holds the receipt it gave this node for claim"),
        "{out}"
    );
    // The other receipt names the hash before its entry, which the rewrite changed too.
    assert!(
        out.contains("the entries before 2 are not those it had"),
        "{out}"
    );
    let after = check(&mut dresden).await;
    assert_eq!(after.receipts_checked, 0, "{:?}", after.findings);
}
