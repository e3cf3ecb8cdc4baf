//! Witnessing the other members' ledgers, as Certificate Transparency witnesses do. A node's
//! ledger is a hash chain whose head it signs; on its own that proves nothing against the node's
//! operator, who holds the signing key and can rewrite the past and sign a new head. So every
//! node regularly asks each peer for its signed head and the entries since the head it saw last
//! (events left out: only their hashes, so no other pair's settlements are shown), checks that
//! they continue what the peer showed before, and keeps the new head. Every receipt a peer gave
//! also names its entry and the hash before it. A peer that rewrites its past can then no longer
//! show a ledger that holds both what it signed to its witnesses earlier and the receipts it gave
//! them: the witness round notices it by itself and keeps both signed heads as proof, and
//! `schein ledger verify --peer` checks the whole chain against every anchor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use schein_proto::Day;
use schein_proto::ledger::{LedgerError, Position, event_digest, receipt_digest, redacted};
use schein_proto::signed;
use schein_proto::v1::{
    ErrorReason, LedgerEntry, LedgerEvent, LedgerHead, LedgerProofResponse, PeerLedgerCheck,
    Receipt, ledger_event,
};
use tokio::sync::watch;

use super::Refusal;
use super::ledger::entries_and_head;
use crate::node::{Node, unix_now};
use crate::peers::PeerError;
use crate::roster::Member;
use crate::store::{Contradiction, StoreError, Witnessed};

/// Entries per proof page: redacted entries are ~85 bytes, so a page stays well inside the
/// message size limit.
pub const PROOF_PAGE: u32 = 512;

/// How long one witness round may take with one peer, in peer-call bounds (a call brings a page
/// of up to 512 entries): a peer that keeps sending pages, or stalls, is given up on for this
/// round and asked again in the next.
const ROUND_CALLS: u32 = 64;

/// Why a peer's ledger could not be witnessed or checked (a contradiction is not an error: it is
/// the finding).
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("'{0}' is not a member node of this roster")]
    NotAMember(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("'{peer}' answered with a ledger head that does not verify: {error}")]
    BadHead { peer: String, error: String },
    #[error("'{peer}' answered with entries that do not chain up to its own head: {error}")]
    BadChain { peer: String, error: LedgerError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal for WitnessError {
    fn reason(&self) -> ErrorReason {
        match self {
            WitnessError::NotAMember(_) => ErrorReason::InvalidArgument,
            WitnessError::Unreachable(_) => ErrorReason::PeerUnreachable,
            WitnessError::BadHead { .. } => ErrorReason::BadSignature,
            WitnessError::BadChain { .. } => ErrorReason::BadSignature,
            WitnessError::Store(error) => error.reason(),
        }
    }
}

impl From<PeerError> for WitnessError {
    fn from(error: PeerError) -> Self {
        WitnessError::Unreachable(error.to_string())
    }
}

/// The federation side: entries from `from_seq` with their events left out, and the signed head.
pub fn proof(node: &Node, from_seq: u64, limit: u32) -> Result<LedgerProofResponse, StoreError> {
    let limit = match limit {
        0 => PROOF_PAGE,
        n => n.min(PROOF_PAGE),
    };
    let (entries, signed_head) = entries_and_head(node, from_seq, limit as usize)?;
    Ok(LedgerProofResponse {
        entries: entries.iter().map(redacted).collect(),
        signed_head,
    })
}

/// A member node other than this one, by id.
fn peer(node: &Node, id: &str) -> Result<Member, WitnessError> {
    node.roster()
        .member(id)
        .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
        .cloned()
        .ok_or_else(|| WitnessError::NotAMember(id.to_owned()))
}

/// A peer's signed head, opened with its keys.
fn open_head(member: &Member, signed_head: &[u8]) -> Result<LedgerHead, WitnessError> {
    let bad = |error: String| WitnessError::BadHead {
        peer: member.id().to_owned(),
        error,
    };
    let head: LedgerHead = member
        .open(signed_head, Day::today())
        .map_err(|e| bad(e.to_string()))?;
    if head.node != member.id() {
        return Err(bad(format!("it names node '{}'", head.node)));
    }
    Ok(head)
}

fn position_of(witnessed: &Witnessed) -> Result<Position, StoreError> {
    Ok(Position {
        seq: witnessed.seq,
        hash: witnessed
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("a witnessed head's hash".into()))?,
    })
}

/// A peer's ledger walked page by page from `from_seq` up to the head of the first page (a
/// settlement in between must not move the goal).
struct Walk<'a> {
    node: &'a Node,
    member: &'a Member,
    next: u64,
    head: Option<(LedgerHead, Vec<u8>)>,
}

impl<'a> Walk<'a> {
    fn new(node: &'a Node, member: &'a Member, from_seq: u64) -> Self {
        Self {
            node,
            member,
            next: from_seq,
            head: None,
        }
    }

    /// The next page of entries, none once the head is reached.
    async fn page(&mut self) -> Result<Vec<LedgerEntry>, WitnessError> {
        if let Some((head, _)) = &self.head
            && self.next > head.seq
        {
            return Ok(Vec::new());
        }
        let page = self
            .node
            .peers
            .ledger_proof(self.member, self.next, PROOF_PAGE)
            .await?;
        if self.head.is_none() {
            let head = open_head(self.member, &page.signed_head)?;
            self.head = Some((head, page.signed_head));
        }
        let goal = self.head.as_ref().map_or(0, |(head, _)| head.seq);
        let entries: Vec<LedgerEntry> = page
            .entries
            .into_iter()
            .take_while(|e| e.seq <= goal)
            .collect();
        if entries.is_empty() && self.next <= goal {
            return Err(WitnessError::BadChain {
                peer: self.member.id().to_owned(),
                error: LedgerError::HeadMismatch {
                    head: goal,
                    last: self.next.saturating_sub(1),
                },
            });
        }
        self.next = entries.last().map_or(self.next, |e| e.seq + 1);
        Ok(entries)
    }

    fn head(&self) -> Option<&(LedgerHead, Vec<u8>)> {
        self.head.as_ref()
    }
}

/// What one witness round found at a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witness {
    /// The peer's ledger continues what it showed before; its head is kept.
    Continues { seq: u64 },
    /// It does not: the contradiction is kept, the head witnessed before stays.
    Contradicts(String),
}

/// One witness round at `member`: fetches what was added since the head witnessed last, checks
/// that it continues it, and keeps the new head (or the contradiction).
pub async fn witness(node: &Node, member: &Member) -> Result<Witness, WitnessError> {
    let before = node.store.witnessed(member.id())?;
    let start = match &before {
        Some(witnessed) => position_of(witnessed)?,
        None => Position::START,
    };
    let mut walk = Walk::new(node, member, start.seq + 1);
    let mut position = start;
    let mut finding = None;
    'pages: loop {
        let entries = match walk.page().await {
            Ok(entries) => entries,
            // Shorter than what it showed before: entries were dropped.
            Err(WitnessError::BadChain { .. })
                if walk.head().is_some_and(|(head, _)| head.seq < start.seq) =>
            {
                break 'pages;
            }
            Err(error) => return Err(error),
        };
        if entries.is_empty() {
            break;
        }
        for entry in &entries {
            if let Err(error) = position.follow(entry) {
                if entry.seq == start.seq + 1 && before.is_some() {
                    finding = Some(format!(
                        "its entry {} no longer follows entry {} as it signed it on {}: it changed its past",
                        entry.seq,
                        start.seq,
                        when(before.as_ref()),
                    ));
                    break 'pages;
                }
                return Err(WitnessError::BadChain {
                    peer: member.id().to_owned(),
                    error,
                });
            }
        }
    }
    let Some((head, signed_head)) = walk.head().cloned() else {
        return Err(WitnessError::Unreachable(format!(
            "'{}' sent no ledger head",
            member.id()
        )));
    };
    if finding.is_none() && head.seq < start.seq {
        finding = Some(format!(
            "its ledger now ends at entry {} but it signed a head at entry {} on {}: entries were dropped",
            head.seq,
            start.seq,
            when(before.as_ref()),
        ));
    }
    if finding.is_none()
        && let Err(error) = position.check_head(&head)
    {
        // Same length as before but another hash: the last entry was changed.
        if head.seq == start.seq && before.is_some() {
            finding = Some(format!(
                "its entry {} is not the one it signed on {}: it changed its past",
                head.seq,
                when(before.as_ref()),
            ));
        } else {
            return Err(WitnessError::BadChain {
                peer: member.id().to_owned(),
                error,
            });
        }
    }
    if let Some(finding) = finding {
        let contradiction = Contradiction {
            earlier_head: before.map(|b| b.signed_head).unwrap_or_default(),
            later_head: signed_head,
            finding: finding.clone(),
            at: unix_now(),
        };
        if node
            .store
            .record_contradiction(member.id(), &contradiction)
            .await?
        {
            tracing::error!(peer = member.id(), %finding, "a peer's ledger contradicts the head it signed before");
        }
        return Ok(Witness::Contradicts(finding));
    }
    if before.as_ref().is_none_or(|b| b.seq != head.seq) {
        node.store
            .witness(
                member.id(),
                &Witnessed {
                    signed_head,
                    seq: head.seq,
                    hash: head.hash.clone(),
                    at: unix_now(),
                },
            )
            .await?;
    }
    Ok(Witness::Continues { seq: head.seq })
}

fn when(witnessed: Option<&Witnessed>) -> String {
    witnessed
        .map(|w| Day::of_unix_seconds(w.at).to_string())
        .unwrap_or_else(|| "an earlier day".into())
}

/// Where a receipt the peer gave this node says it sits in the peer's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReceiptAnchor {
    claim_id: String,
    /// Empty for receipts from before receipts carried it.
    prev_hash: Vec<u8>,
    digest: [u8; 32],
}

/// The receipts `peer` gave this node, by their entry in `peer`'s ledger (read from this node's
/// own ledger, where each received receipt is recorded).
fn receipts_from(node: &Node, peer: &str) -> Result<BTreeMap<u64, ReceiptAnchor>, StoreError> {
    let mut anchors = BTreeMap::new();
    let mut from = 1;
    loop {
        let entries = node.store.ledger_entries(from, 1000)?;
        let Some(last) = entries.last() else {
            return Ok(anchors);
        };
        from = last.seq + 1;
        for entry in &entries {
            let Ok(LedgerEvent {
                event: Some(ledger_event::Event::ReceivedReceipt(bytes)),
            }) = prost::Message::decode(entry.event.as_slice())
            else {
                continue;
            };
            let Ok(receipt) = signed::peek::<Receipt>(&bytes) else {
                continue;
            };
            if receipt.issuer == peer {
                anchors.insert(
                    receipt.ledger_seq,
                    ReceiptAnchor {
                        claim_id: receipt.claim_id,
                        prev_hash: receipt.ledger_prev_hash,
                        digest: receipt_digest(&bytes),
                    },
                );
            }
        }
    }
}

/// What an entry of the peer's ledger contradicts, if anything: the head witnessed at its
/// position, or the receipt the peer gave for it.
fn check_entry(
    entry: &LedgerEntry,
    hash: [u8; 32],
    witnessed: Option<&Witnessed>,
    receipts: &BTreeMap<u64, ReceiptAnchor>,
) -> Vec<String> {
    let mut findings = Vec::new();
    if let Some(w) = witnessed
        && w.seq == entry.seq
        && w.hash != hash
    {
        findings.push(format!(
            "entry {} is not the one it signed to this node on {}",
            entry.seq,
            when(Some(w))
        ));
    }
    if let Some(anchor) = receipts.get(&entry.seq) {
        if event_digest(entry) != anchor.digest {
            findings.push(format!(
                "entry {} no longer holds the receipt it gave this node for claim {}",
                entry.seq, anchor.claim_id
            ));
        } else if !anchor.prev_hash.is_empty() && anchor.prev_hash != entry.prev_hash {
            findings.push(format!(
                "the entries before {} are not those it had when it gave this node the receipt for claim {}",
                entry.seq, anchor.claim_id
            ));
        }
    }
    findings
}

/// Checks `peer_id`'s whole ledger against what this node holds of it: the head witnessed last,
/// and every receipt it gave this node. Also a witness round: a consistent ledger's head is kept.
pub async fn check_peer(node: &Node, peer_id: &str) -> Result<PeerLedgerCheck, WitnessError> {
    let member = peer(node, peer_id)?;
    let witnessed = node.store.witnessed(peer_id)?;
    let receipts = receipts_from(node, peer_id)?;
    let mut findings = Vec::new();
    let mut evidence_head = Vec::new();
    if let Some(earlier) = node.store.contradiction(peer_id)? {
        findings.push(format!(
            "the witness round found on {}: {}",
            when(Some(&Witnessed {
                at: earlier.at,
                ..Default::default()
            })),
            earlier.finding
        ));
        evidence_head = earlier.earlier_head;
    }
    let mut walk = Walk::new(node, &member, 1);
    let mut position = Position::START;
    let mut receipts_checked = 0;
    'pages: loop {
        let entries = walk.page().await?;
        if entries.is_empty() {
            break;
        }
        for entry in &entries {
            if let Err(error) = position.follow(entry) {
                findings.push(format!("its chain does not check out: {error}"));
                break 'pages;
            }
            let found = check_entry(entry, position.hash, witnessed.as_ref(), &receipts);
            if found.is_empty() && receipts.contains_key(&entry.seq) {
                receipts_checked += 1;
            }
            findings.extend(found);
        }
    }
    let Some((head, signed_head)) = walk.head().cloned() else {
        return Err(WitnessError::Unreachable(format!(
            "'{peer_id}' sent no ledger head"
        )));
    };
    if findings.is_empty()
        && let Err(error) = position.check_head(&head)
    {
        findings.push(format!("its chain does not check out: {error}"));
    }
    if let Some(w) = &witnessed
        && head.seq < w.seq
    {
        findings.push(format!(
            "its ledger ends at entry {} but it signed a head at entry {} to this node on {}: entries were dropped",
            head.seq,
            w.seq,
            when(Some(w))
        ));
    }
    let missing = receipts.range(head.seq + 1..).count();
    if missing > 0 {
        findings.push(format!(
            "{missing} receipts it gave this node name entries past the end of its ledger"
        ));
    }
    let (witnessed_seq, witnessed_at) = witnessed.as_ref().map_or((0, 0), |w| (w.seq, w.at));
    if findings.is_empty() {
        node.store
            .witness(
                peer_id,
                &Witnessed {
                    signed_head: signed_head.clone(),
                    seq: head.seq,
                    hash: head.hash.clone(),
                    at: unix_now(),
                },
            )
            .await?;
    } else if evidence_head.is_empty() {
        evidence_head = witnessed.map(|w| w.signed_head).unwrap_or_default();
    }
    Ok(PeerLedgerCheck {
        node: peer_id.to_owned(),
        entries: head.seq,
        signed_head,
        witnessed_seq,
        witnessed_at,
        receipts_checked,
        findings,
        evidence_head,
    })
}

/// Witnesses every peer every `interval` until `stop` turns true. A peer that is down is tried
/// again next round; a contradiction is logged once, when found.
pub async fn run_witness(node: Arc<Node>, interval: Duration, mut stop: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            break;
        }
        let roster = node.roster();
        let peers: Vec<&Member> = roster
            .members()
            .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
            .collect();
        // Each peer within its own bound, so that one that keeps sending pages (or none) holds
        // up neither the others nor the next round.
        let bound = node.peers.call_bound() * ROUND_CALLS;
        let rounds = peers.iter().map(|member| async {
            let round = tokio::time::timeout(bound, witness(&node, member))
                .await
                .unwrap_or_else(|_| {
                    Err(WitnessError::Unreachable(format!(
                        "'{}' did not finish showing its ledger within {bound:?}",
                        member.id()
                    )))
                });
            match round {
                Ok(Witness::Continues { seq }) => {
                    tracing::debug!(peer = member.id(), seq, "witnessed a peer's ledger head");
                }
                Ok(Witness::Contradicts(_)) => {}
                Err(WitnessError::Unreachable(error)) => {
                    tracing::debug!(peer = member.id(), %error, "witnessing a peer's ledger must wait");
                }
                Err(error) => {
                    tracing::warn!(peer = member.id(), %error, "witnessing a peer's ledger failed");
                }
            }
        });
        futures::future::join_all(rounds).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors(seq: u64, digest: [u8; 32], prev_hash: Vec<u8>) -> BTreeMap<u64, ReceiptAnchor> {
        BTreeMap::from([(
            seq,
            ReceiptAnchor {
                claim_id: "c-1".into(),
                prev_hash,
                digest,
            },
        )])
    }

    fn entry(seq: u64, prev: u8, receipt: &[u8]) -> LedgerEntry {
        let event = LedgerEvent {
            event: Some(ledger_event::Event::Receipt(receipt.to_vec())),
        };
        LedgerEntry {
            seq,
            prev_hash: vec![prev; 32],
            event: prost::Message::encode_to_vec(&event),
            event_hash: Vec::new(),
        }
    }

    #[test]
    fn an_entry_is_held_to_the_receipt_and_the_head_it_was_anchored_by() {
        let receipt = b"receipt".to_vec();
        let kept = redacted(&entry(3, 7, &receipt));
        let held = anchors(3, receipt_digest(&receipt), vec![7; 32]);
        assert!(check_entry(&kept, [1; 32], None, &held).is_empty());

        let swapped = redacted(&entry(3, 7, b"another receipt"));
        let found = check_entry(&swapped, [1; 32], None, &held);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("no longer holds the receipt"),
            "{found:?}"
        );

        let moved_history = redacted(&entry(3, 8, &receipt));
        let found = check_entry(&moved_history, [1; 32], None, &held);
        assert!(found[0].contains("not those it had"), "{found:?}");

        // A receipt from before receipts named the hash before them is held to its event only.
        let old = anchors(3, receipt_digest(&receipt), Vec::new());
        assert!(check_entry(&moved_history, [1; 32], None, &old).is_empty());

        let witnessed = Witnessed {
            seq: 3,
            hash: vec![1; 32],
            ..Default::default()
        };
        assert!(check_entry(&kept, [1; 32], Some(&witnessed), &held).is_empty());
        let found = check_entry(&kept, [2; 32], Some(&witnessed), &held);
        assert!(found[0].contains("not the one it signed"), "{found:?}");
    }
}
