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
            key_id: KeyId::of(&node.signing_key.verifying_key()).0,
        },
        &node.signing_key,
    )
}
