//! The node's ledger as its office reads it: hash-chained entries and a head signed by the node,
//! so that the office (and `schein ledger verify`) can check that nothing was changed or dropped.

use schein_proto::KeyId;
use schein_proto::v1::{LedgerEntry, LedgerHead, LedgerResponse};

use super::page;
use crate::node::Node;
use crate::store::{self, StoreError};

/// Up to a page of entries from `from_seq` (1 is the first) and the signed head.
pub fn read(node: &Node, from_seq: u64, limit: u32) -> Result<LedgerResponse, StoreError> {
    let (entries, signed_head) = entries_and_head(node, from_seq, page::size(limit))?;
    let signing_keys = node
        .roster()
        .member(&node.id)
        .map(|me| me.to_proto().signing_keys)
        .unwrap_or_default();
    Ok(LedgerResponse {
        entries,
        signed_head,
        signing_keys,
    })
}

/// Up to `limit` entries from `from_seq` and the head, signed now. The head is read first and
/// entries only up to it: a settlement in between must not make a consistent ledger look broken.
pub(super) fn entries_and_head(
    node: &Node,
    from_seq: u64,
    limit: usize,
) -> Result<(Vec<LedgerEntry>, Vec<u8>), StoreError> {
    let head = node.store.ledger_head()?;
    let from = from_seq.max(1);
    let limit = limit.min(
        usize::try_from(head.seq.saturating_add(1).saturating_sub(from)).unwrap_or(usize::MAX),
    );
    let entries = node.store.ledger_entries(from, limit)?;
    Ok((entries, sign_head(node, &head)))
}

fn sign_head(node: &Node, head: &store::LedgerHead) -> Vec<u8> {
    schein_proto::signed::seal(
        schein_proto::signed::Kind::LedgerHead,
        &LedgerHead {
            node: node.id.clone(),
            seq: head.seq,
            hash: head.hash.to_vec(),
            key_id: KeyId::of(&node.signing_key().verifying_key()).0,
        },
        &node.signing_key(),
    )
}

/// Checks this node's whole ledger as `schein ledger verify` does, page by page: every entry
/// chained to the one before, up to the head it signs now. The number of entries, or what is
/// wrong.
pub fn verify_own(node: &Node) -> Result<u64, String> {
    let (_, signed_head) = entries_and_head(node, 1, 0).map_err(|e| e.to_string())?;
    let keys = node
        .roster()
        .member(&node.id)
        .map(|me| me.to_proto().signing_keys)
        .unwrap_or_default();
    let head = schein_proto::ledger::open_head(&signed_head, &keys).map_err(|e| e.to_string())?;
    let mut position = schein_proto::ledger::Position::START;
    while position.seq < head.seq {
        let entries = node
            .store
            .ledger_entries(position.seq + 1, 1000)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            break;
        }
        for entry in entries.iter().take_while(|e| e.seq <= head.seq) {
            position.follow(entry).map_err(|e| e.to_string())?;
        }
    }
    position.check_head(&head).map_err(|e| e.to_string())?;
    Ok(head.seq)
}
