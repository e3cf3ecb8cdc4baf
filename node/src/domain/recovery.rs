//! Recovery after a restore (DESIGN.md, Storage): an issuer restored from last night's backup
//! has forgotten the settlements it made since and would pay them again. So a restored node
//! settles nothing (Settle, SettleBatch and its own providers' claims on its own vouchers are
//! refused as "recovering, retry later", which every redeemer's outbox does) and shows no
//! ledger to witnesses, until it has asked every peer of the roster for the receipts this node
//! signed that the peer holds (`ReceiptsFor`), checked each with its own key and the record it
//! answers with the peer's key, and re-applied them in ledger order: the settlement with its
//! original receipt bytes (a retried record gets them again), the voucher's spent sums, the
//! report counters, and the ledger entry. A receipt names its ledger position and the hash before
//! it, and its entry's event *is* the signed receipt, so the ledger is rebuilt entry for entry,
//! with the same hashes that the peers witnessed, as long as every entry after the backup was a
//! receipt to a peer. An entry whose event no peer holds (a claim of this node's own providers,
//! a receipt it received, a cap approval, all after the backup) cannot be rebuilt: the receipts
//! after it are appended anew, and `status` says so (the peers' witnesses will then report the
//! ledger as changed, which it is). A peer that does not answer keeps the node recovering; the
//! operator can give it up with `schein-node recover --accept-missing PEER`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use schein_proto::signed::{self, NamesKey};
use schein_proto::v1::{
    ErrorReason, HeldReceipt, LedgerHead, Receipt, ReceiptsForResponse, SettlementRecord,
};
use schein_proto::{KeyId, ledger::entry_hash};
use tokio::sync::watch;

use super::Refusal;
use crate::node::{Node, unix_now};
use crate::roster::Member;
use crate::store::{Placement, Recovered, RecoveryState, StoreError};

/// Receipts per `ReceiptsFor` page (a record and a receipt are some 400 bytes together).
pub const RECEIPTS_PAGE: u32 = 512;

/// How long recovery waits before asking peers that did not answer again, at first and at most.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// The node was restored and has not recovered yet.
#[derive(Debug, thiserror::Error)]
#[error(
    "this node was restored from a backup and is recovering its settlements from its peers; try again later"
)]
pub struct Recovering;

impl Refusal for Recovering {
    fn reason(&self) -> ErrorReason {
        ErrorReason::Recovering
    }
}

/// Refuses with [`Recovering`] while the store is marked as recovering.
pub fn refuse_while_recovering(node: &Node) -> Result<(), RecoveryRefusal> {
    if node.store.recovering()? {
        return Err(RecoveryRefusal::Recovering(Recovering));
    }
    Ok(())
}

/// Why something is refused during recovery, or the store failed to say.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryRefusal {
    #[error(transparent)]
    Recovering(Recovering),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal for RecoveryRefusal {
    fn reason(&self) -> ErrorReason {
        match self {
            RecoveryRefusal::Recovering(r) => r.reason(),
            RecoveryRefusal::Store(e) => e.reason(),
        }
    }
}

/// The federation side: the receipts `caller` signed that this node holds, a page from `after`.
/// Only records this node sent to `caller` and `caller`'s own receipts: nothing of other pairs.
pub fn receipts_for(
    node: &Node,
    caller: &str,
    after: &[u8],
    limit: u32,
) -> Result<ReceiptsForResponse, StoreError> {
    let limit = match limit {
        0 => RECEIPTS_PAGE,
        n => n.min(RECEIPTS_PAGE),
    };
    let crate::store::HeldPage { held, next } =
        node.store.receipts_for(caller, after, limit as usize)?;
    Ok(ReceiptsForResponse {
        receipts: held
            .into_iter()
            .map(|(signed_record, signed_receipt)| HeldReceipt {
                signed_record,
                signed_receipt,
            })
            .collect(),
        next: next.unwrap_or_default(),
        witnessed_head: node
            .store
            .witnessed(caller)?
            .map(|w| w.signed_head)
            .unwrap_or_default(),
    })
}

/// Opens a document `member` signed with any of its keys, whatever the day: a receipt made
/// before a key rotation is still this node's own.
fn open_signed<M: NamesKey>(member: &Member, bytes: &[u8]) -> Result<M, String> {
    let claimed: M = signed::peek(bytes).map_err(|e| e.to_string())?;
    let key = member
        .key(&KeyId(claimed.key_id().to_owned()))
        .map_err(|e| e.to_string())?;
    signed::open(M::KIND, bytes, &key.public_key).map_err(|e| e.to_string())
}

/// What one peer gave: its held receipts, checked, and the head of this node it witnessed.
struct FromPeer {
    receipts: Vec<Recovered>,
    witnessed: Option<LedgerHead>,
    refused: usize,
}

/// Fetches and checks every receipt of this node that `member` holds.
async fn fetch(node: &Node, me: &Member, member: &Member) -> Result<FromPeer, String> {
    let mut after = Vec::new();
    let mut found = FromPeer {
        receipts: Vec::new(),
        witnessed: None,
        refused: 0,
    };
    loop {
        let page = node
            .peers
            .receipts_for(member, &after, RECEIPTS_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        if found.witnessed.is_none() && !page.witnessed_head.is_empty() {
            found.witnessed = open_signed::<LedgerHead>(me, &page.witnessed_head)
                .ok()
                .filter(|h| h.node == node.id);
        }
        for held in page.receipts {
            match check(node, me, member, &held) {
                Ok(recovered) => found.receipts.push(recovered),
                Err(why) => {
                    found.refused += 1;
                    tracing::warn!(peer = member.id(), %why, "a held receipt was not taken");
                }
            }
        }
        if page.next.is_empty() {
            return Ok(found);
        }
        if page.next <= after {
            return Err(format!(
                "'{}' sent a page cursor that goes back",
                member.id()
            ));
        }
        after = page.next;
    }
}

/// A held receipt is taken only if this node signed it, for a record the peer signed, and both
/// say the same claim of that peer.
fn check(node: &Node, me: &Member, peer: &Member, held: &HeldReceipt) -> Result<Recovered, String> {
    let receipt: Receipt = open_signed(me, &held.signed_receipt)
        .map_err(|e| format!("the receipt does not verify: {e}"))?;
    let record: SettlementRecord = open_signed(peer, &held.signed_record)
        .map_err(|e| format!("the record does not verify: {e}"))?;
    if receipt.issuer != node.id || receipt.redeemer != peer.id() || record.redeemer != peer.id() {
        return Err("the receipt is not one of this node to the peer".into());
    }
    if receipt.claim_id != record.claim_id
        || receipt.serial != record.serial
        || receipt.amount_cents != record.amount_cents
        || receipt.category != record.category
    {
        return Err("the receipt does not answer the record".into());
    }
    Ok(Recovered {
        record,
        signed_receipt: held.signed_receipt.clone(),
        receipt,
    })
}

/// Runs the recovery, if the store is restored and not recovered yet, until it is done or `stop`
/// turns true. Peers that do not answer are asked again with growing pauses.
pub async fn run_recovery(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut fetched: HashMap<String, FromPeer> = HashMap::new();
    let mut pause = FIRST_RETRY;
    loop {
        let state = match node.store.recovery() {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "reading the recovery state failed");
                return;
            }
        };
        match round(&node, state, &mut fetched).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "recovery failed; trying again"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
        if *stop.borrow() {
            return;
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// Asks every peer not asked successfully yet; once all answered (or were given up), re-applies
/// what they gave and ends the recovery. True when it ended.
async fn round(
    node: &Node,
    mut state: RecoveryState,
    fetched: &mut HashMap<String, FromPeer>,
) -> Result<bool, StoreError> {
    let roster = node.roster();
    let Some(me) = roster.member(&node.id).cloned() else {
        return Err(StoreError::Corrupt(
            "this node is not in its own roster".into(),
        ));
    };
    let peers: Vec<Member> = roster
        .members()
        .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
        .cloned()
        .collect();
    let asks = peers
        .iter()
        .filter(|m| {
            !fetched.contains_key(m.id()) && !state.accepted_missing.iter().any(|a| a == m.id())
        })
        .map(|member| async { (member.id().to_owned(), fetch(node, &me, member).await) });
    let answers = futures::future::join_all(asks).await;
    // The operator may have given up a peer meanwhile: read the state again before writing it.
    if let Some(fresh) = node.store.recovery()? {
        state.accepted_missing = fresh.accepted_missing;
    }
    for (peer, answer) in answers {
        let progress = match state.peers.iter_mut().position(|p| p.peer == peer) {
            Some(i) => &mut state.peers[i],
            None => {
                state.peers.push(crate::store::PeerRecovery {
                    peer: peer.clone(),
                    ..Default::default()
                });
                state
                    .peers
                    .last_mut()
                    .ok_or_else(|| StoreError::Corrupt("recovery".into()))?
            }
        };
        progress.attempts = progress.attempts.saturating_add(1);
        match answer {
            Ok(from) => {
                progress.done = true;
                progress.receipts = from.receipts.len() as u64;
                progress.error.clear();
                tracing::info!(peer = %peer, receipts = from.receipts.len(), refused = from.refused, "receipts recovered from a peer");
                fetched.insert(peer, from);
            }
            Err(error) => {
                progress.done = false;
                progress.error = error;
                tracing::warn!(peer = %peer, error = %progress.error, "recovery must wait for a peer");
            }
        }
    }
    let waiting = peers.iter().any(|m| {
        !fetched.contains_key(m.id()) && !state.accepted_missing.iter().any(|a| a == m.id())
    });
    if waiting {
        node.store.note_recovery(&state).await?;
        return Ok(false);
    }
    reapply(node, &mut state, fetched).await?;
    node.store.finish_recovery(&state).await?;
    tracing::info!(
        exact = state.exact,
        moved = state.moved,
        known = state.known,
        warnings = state.warnings.len(),
        "recovery finished; settling again"
    );
    Ok(true)
}

/// Re-applies every fetched receipt in the order of its ledger position, then checks the
/// rebuilt ledger against the heads the peers witnessed.
async fn reapply(
    node: &Node,
    state: &mut RecoveryState,
    fetched: &HashMap<String, FromPeer>,
) -> Result<(), StoreError> {
    let mut ordered: BTreeMap<(u64, String, String), &Recovered> = BTreeMap::new();
    for from in fetched.values() {
        for recovered in &from.receipts {
            ordered.insert(
                (
                    recovered.receipt.ledger_seq,
                    recovered.record.redeemer.clone(),
                    recovered.record.claim_id.clone(),
                ),
                recovered,
            );
        }
    }
    let mut first_moved = None;
    for ((seq, _, _), recovered) in ordered {
        match node.store.recover(&node.id, recovered.clone()).await? {
            Placement::Known => state.known += 1,
            Placement::Exact => state.exact += 1,
            Placement::Moved => {
                state.moved += 1;
                first_moved.get_or_insert(seq);
            }
        }
    }
    if let Some(seq) = first_moved {
        state.warnings.push(format!(
            "ledger entry {seq} and later could not be rebuilt where they were: an entry before \
             them was no receipt to a peer (a claim of this node's own providers, a receipt it \
             received or a cap approval after the backup); {} receipts were appended anew, and \
             peers that witnessed the old entries will report the ledger as changed",
            state.moved
        ));
    }
    for (peer, from) in fetched {
        let Some(head) = &from.witnessed else {
            continue;
        };
        let holds = node
            .store
            .ledger_entries(head.seq, 1)?
            .first()
            .is_some_and(|e| e.seq == head.seq && entry_hash(e).as_slice() == head.hash);
        if !holds {
            state.warnings.push(format!(
                "'{peer}' witnessed ledger entry {} of this node, which the rebuilt ledger does not hold as signed",
                head.seq
            ));
        }
    }
    state.finished_at = unix_now();
    Ok(())
}

/// Gives up waiting for `peer` (gone for good): the node settles again without the receipts
/// only that peer holds, which it may then pay a second time.
pub async fn accept_missing(
    node_store: &crate::store::Store,
    peer: &str,
) -> Result<bool, StoreError> {
    let Some(mut state) = node_store.recovery()? else {
        return Ok(false);
    };
    if !state.accepted_missing.iter().any(|p| p == peer) {
        state.accepted_missing.push(peer.to_owned());
    }
    node_store.note_recovery(&state).await?;
    Ok(true)
}

/// The recovery under way, or the last one, for `schein-node status`.
pub fn describe(store: &crate::store::Store) -> Result<String, StoreError> {
    let mut out = String::new();
    let (state, running) = match (store.recovery()?, store.last_recovery()?) {
        (Some(state), _) => (state, true),
        (None, Some(state)) => (state, false),
        (None, None) => {
            let head = store.ledger_head()?;
            let _ = writeln!(out, "state: serving (never restored from a backup)");
            let _ = writeln!(out, "ledger: {} entries", head.seq);
            return Ok(out);
        }
    };
    let _ = writeln!(
        out,
        "state: {}",
        if running {
            "recovering (settles nothing until every peer answered)"
        } else {
            "serving (recovered)"
        }
    );
    let _ = writeln!(
        out,
        "restored from a backup at ledger entry {} taken {}",
        state.backup_seq,
        time::OffsetDateTime::from_unix_timestamp(state.backup_at)
            .map(|t| t.to_string())
            .unwrap_or_default()
    );
    for peer in &state.peers {
        let what = if state.accepted_missing.contains(&peer.peer) {
            "given up (--accept-missing)".to_owned()
        } else if peer.done {
            format!("done, {} receipts", peer.receipts)
        } else if peer.error.is_empty() {
            "waiting".to_owned()
        } else {
            format!("waiting ({} attempts): {}", peer.attempts, peer.error)
        };
        let _ = writeln!(out, "peer {}: {what}", peer.peer);
    }
    for peer in &state.accepted_missing {
        if !state.peers.iter().any(|p| &p.peer == peer) {
            let _ = writeln!(out, "peer {peer}: given up (--accept-missing)");
        }
    }
    if !running {
        let _ = writeln!(
            out,
            "receipts re-applied: {} at their ledger position, {} appended anew, {} known from the backup",
            state.exact, state.moved, state.known
        );
    }
    for warning in &state.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    Ok(out)
}
