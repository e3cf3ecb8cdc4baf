//! Closing a period (DESIGN.md, flow 6): for each pair of nodes, the issuer's liabilities to the
//! redeemer must equal the redeemer's receivables from the issuer. This node asks every peer
//! for its signed statement of the period, compares it claim by claim with its own books, and
//! records agreement or the claim ids that differ; its net position follows.

use std::collections::BTreeMap;

use schein_proto::Day;
use schein_proto::KeyId;
use schein_proto::error::refusal;
use schein_proto::period::Period;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{ClaimAmount, ClearingResult, ErrorReason, PairClearing, PeriodStatement};
use tonic::Status;

use crate::node::Node;
use crate::roster::{Member, MemberKind};

/// This node's statement of `period` for `peer`, signed.
pub fn statement(node: &Node, peer: &str, period: Period) -> Result<Vec<u8>, Status> {
    let statement = PeriodStatement {
        period: period.to_string(),
        node: node.id.clone(),
        peer: peer.to_owned(),
        liabilities: node.store.liabilities_to(peer, period)?,
        receivables: node.store.receivables_from(peer, period)?,
        key_id: KeyId::of(&node.signing_key.verifying_key()).0,
    };
    Ok(signed::seal(Kind::Statement, &statement, &node.signing_key))
}

fn open_statement(peer: &Member, bytes: &[u8]) -> Result<PeriodStatement, String> {
    let claimed: PeriodStatement = signed::peek(bytes).map_err(|e| e.to_string())?;
    let key = peer
        .key_in_use(&KeyId(claimed.key_id), Day::today())
        .map_err(|e| e.to_string())?;
    signed::open(Kind::Statement, bytes, &key.public_key).map_err(|e| e.to_string())
}

fn total(amounts: &[ClaimAmount]) -> i64 {
    amounts
        .iter()
        .fold(0i64, |sum, a| sum.saturating_add(a.amount_cents))
}

/// Claim ids on one side only, or with different amounts.
fn differing(mine: &[ClaimAmount], theirs: &[ClaimAmount]) -> Vec<String> {
    let mine: BTreeMap<&str, i64> = mine
        .iter()
        .map(|a| (a.claim_id.as_str(), a.amount_cents))
        .collect();
    let theirs: BTreeMap<&str, i64> = theirs
        .iter()
        .map(|a| (a.claim_id.as_str(), a.amount_cents))
        .collect();
    let mut ids: Vec<String> = mine
        .iter()
        .filter(|(id, amount)| theirs.get(*id) != Some(*amount))
        .chain(
            theirs
                .iter()
                .filter(|(id, amount)| mine.get(*id) != Some(*amount)),
        )
        .map(|(id, _)| (*id).to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Reconciles `period` with every peer, stores the result and closes the period.
pub async fn close(node: &Node, period: Period) -> Result<ClearingResult, Status> {
    node.store.mark_closed(period).await?;
    let roster = node.roster();
    let mut pairs = Vec::new();
    let mut net: i64 = 0;
    for peer in roster
        .members()
        .filter(|m| m.entry.kind == MemberKind::Node && m.id() != node.id)
    {
        let liabilities = node.store.liabilities_to(peer.id(), period)?;
        let receivables = node.store.receivables_from(peer.id(), period)?;
        net = net.saturating_add(total(&receivables).saturating_sub(total(&liabilities)));
        let mut pair = PairClearing {
            peer: peer.id().to_owned(),
            liabilities_cents: total(&liabilities),
            receivables_cents: total(&receivables),
            ..Default::default()
        };
        let theirs = match node.peers.statement(peer, &period.to_string()).await {
            Ok(bytes) => open_statement(peer, &bytes).and_then(|s| {
                let fits =
                    s.node == peer.id() && s.peer == node.id && s.period == period.to_string();
                if fits {
                    Ok(s)
                } else {
                    Err("a statement about something else".into())
                }
            }),
            Err(error) => Err(error.to_string()),
        };
        match theirs {
            Ok(theirs) => {
                pair.reached = true;
                pair.peer_receivables_cents = total(&theirs.receivables);
                pair.peer_liabilities_cents = total(&theirs.liabilities);
                pair.differing_claim_ids = differing(&liabilities, &theirs.receivables);
                pair.differing_claim_ids
                    .extend(differing(&receivables, &theirs.liabilities));
                // Equal totals too: a statement naming one claim twice must not pass.
                pair.agreed = pair.differing_claim_ids.is_empty()
                    && pair.liabilities_cents == pair.peer_receivables_cents
                    && pair.receivables_cents == pair.peer_liabilities_cents;
            }
            Err(error) => {
                tracing::warn!(peer = peer.id(), %error, "no statement for clearing");
            }
        }
        pairs.push(pair);
    }
    let result = ClearingResult {
        node: node.id.clone(),
        period: period.to_string(),
        pairs,
        net_position_cents: net,
        closed: true,
        ..Default::default()
    };
    node.store.save_clearing(period, &result).await?;
    tracing::info!(%period, net_position_cents = net, "period closed");
    Ok(result)
}

/// Reads a period from a request.
pub fn parse_period(text: &str) -> Result<Period, Status> {
    Period::parse(text).map_err(|e| refusal(ErrorReason::InvalidArgument, e.to_string()))
}
