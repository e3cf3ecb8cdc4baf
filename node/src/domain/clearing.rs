//! Closing a period (DESIGN.md, flow 6): for each pair of nodes, the issuer's liabilities to the
//! redeemer must equal the redeemer's receivables from the issuer.
//!
//! A period closes pair by pair, and both sides record it: this node asks every peer, at the
//! same time, to close the pair; the peer delivers what it still owes this node, records the
//! close and answers with its final signed statement, which this node compares claim by claim
//! with its own books. A peer that does not answer in time leaves its pair open, and the period
//! in the state "closing", which `clearing show` reports as it is; closing again completes it.
//!
//! A period closes only after its claim deadline (the last day on which a claim for a service
//! in it could still be accepted, by the vouchers valid in it) at both nodes of a pair. Earlier,
//! a second, different office identity must close it too, and the answer to the first says what
//! will be refused from then on. A period that has not begun never closes.

use std::collections::BTreeMap;

use schein_proto::period::Period;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{
    ClaimAmount, ClearingResult, ClearingState, ErrorReason, PairClearing, PeriodStatement,
};
use schein_proto::{Day, KeyId};

use super::Refusal;
use crate::node::Node;
use crate::roster::{Member, MemberKind};
use crate::store::PairClose;
use crate::store::StoreError;

/// Why a clearing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClearingError {
    #[error("{0}")]
    InvalidPeriod(String),
    #[error("{0}")]
    NotClosable(String),
    #[error("{0}")]
    AlreadyClosed(String),
    #[error("{0}")]
    NeedsSecondApproval(String),
    #[error("you are not a member of this roster")]
    NotAMember,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal for ClearingError {
    fn reason(&self) -> ErrorReason {
        match self {
            ClearingError::InvalidPeriod(_) => ErrorReason::InvalidArgument,
            ClearingError::NotClosable(_) => ErrorReason::PeriodNotClosable,
            ClearingError::AlreadyClosed(_) => ErrorReason::AlreadyClosed,
            ClearingError::NeedsSecondApproval(_) => ErrorReason::NeedsSecondApproval,
            ClearingError::NotAMember => ErrorReason::UnknownIdentity,
            ClearingError::Store(error) => error.reason(),
        }
    }
}

/// This node's statement of `period` for `peer`, signed.
pub fn statement(node: &Node, peer: &str, period: Period) -> Result<Vec<u8>, ClearingError> {
    let statement = PeriodStatement {
        period: period.to_string(),
        node: node.id.clone(),
        peer: peer.to_owned(),
        liabilities: node.store.liabilities_to(peer, period)?,
        receivables: node.store.receivables_from(peer, period)?,
        key_id: KeyId::of(&node.signing_key().verifying_key()).0,
    };
    Ok(signed::seal(
        Kind::Statement,
        &statement,
        &node.signing_key(),
    ))
}

fn open_statement(peer: &Member, bytes: &[u8]) -> Result<PeriodStatement, String> {
    peer.open(bytes, Day::today())
        .map_err(|e| format!("the statement {e}"))
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

/// The last day on which a claim on one of this node's vouchers valid in `period` could still
/// be accepted; the period's last day if none of its vouchers was valid in it.
pub fn own_deadline(node: &Node, period: Period) -> Result<Day, ClearingError> {
    let last = last_day(period)?;
    Ok(node
        .store
        .period_deadline(period)?
        .unwrap_or(last)
        .max(last))
}

fn last_day(period: Period) -> Result<Day, ClearingError> {
    period
        .last_day()
        .ok_or_else(|| ClearingError::InvalidPeriod("the period is out of range".into()))
}

fn not_closable(message: String) -> ClearingError {
    ClearingError::NotClosable(message)
}

/// Refuses a period that has not begun: nothing in it can be cleared.
fn refuse_future(period: Period, today: Day) -> Result<(), ClearingError> {
    let first = period
        .first_day()
        .ok_or_else(|| ClearingError::InvalidPeriod("the period is out of range".into()))?;
    if first > today {
        return Err(not_closable(format!(
            "{period} has not begun (it begins on {first}); a future period never closes"
        )));
    }
    Ok(())
}

/// The other member nodes.
fn peers(node: &Node) -> Vec<Member> {
    node.roster()
        .members()
        .filter(|m| m.entry.kind == MemberKind::Node && m.id() != node.id)
        .cloned()
        .collect()
}

/// What `period` looks like at this node now: the stored reconciliation where there is one,
/// and for every other pair whether it was closed (by this node or by the peer).
pub fn view(node: &Node, period: Period) -> Result<ClearingResult, ClearingError> {
    let stored = node.store.clearing(period)?;
    let mut result = stored.clone().unwrap_or_else(|| ClearingResult {
        node: node.id.clone(),
        period: period.to_string(),
        ..Default::default()
    });
    result.deadline = Some(own_deadline(node, period)?.into());
    let reconciled: BTreeMap<String, PairClearing> = stored
        .map(|s| s.pairs.into_iter().map(|p| (p.peer.clone(), p)).collect())
        .unwrap_or_default();
    let mut pairs = Vec::new();
    for peer in peers(node) {
        let close = node.store.pair_close(period, peer.id())?;
        let mut pair = reconciled
            .get(peer.id())
            .cloned()
            .unwrap_or_else(|| PairClearing {
                peer: peer.id().to_owned(),
                ..Default::default()
            });
        if let Some(close) = close {
            pair.closed = true;
            pair.closed_by = close.closed_by;
            if !pair.reached && pair.closed_by == peer.id() {
                pair.note = format!(
                    "closed by {}; close the period here too to reconcile the statements",
                    peer.name()
                );
            }
        }
        pairs.push(pair);
    }
    let closed = pairs.iter().filter(|p| p.closed).count();
    let awaiting = node.store.early_close_approver(period)?.is_some();
    result.state = if closed == pairs.len()
        && node.store.pair_close(period, &node.id)?.is_some()
        && pairs.iter().all(|p| p.reached)
    {
        ClearingState::Closed
    } else if closed > 0 || node.store.pair_close(period, &node.id)?.is_some() {
        ClearingState::Closing
    } else if awaiting {
        ClearingState::AwaitingSecondOffice
    } else {
        ClearingState::Open
    } as i32;
    result.closed = result.state == ClearingState::Closed as i32;
    result.net_position_cents = pairs
        .iter()
        .filter(|p| p.reached)
        .map(|p| p.receivables_cents.saturating_sub(p.liabilities_cents))
        .fold(0i64, i64::saturating_add);
    result.pairs = pairs;
    Ok(result)
}

/// The office identity `office` closes `period` with every peer (see the module's doc).
pub async fn close(
    node: &Node,
    office: &str,
    period: Period,
) -> Result<ClearingResult, ClearingError> {
    let today = Day::today();
    refuse_future(period, today)?;
    let before = view(node, period)?;
    if before.state == ClearingState::Closed as i32 {
        return Err(ClearingError::AlreadyClosed(format!(
            "{period} is closed already with every member; `schein clearing show {period}` shows the result"
        )));
    }
    let deadline = own_deadline(node, period)?;
    let resumed = node.store.pair_close(period, &node.id)?;
    let early = match &resumed {
        // Closing again completes a close begun earlier, early or not, without asking again.
        Some(close) => close.early,
        None if today <= deadline => match node.store.early_close_approver(period)? {
            Some(first) if first != office => true,
            Some(_) => {
                return Err(ClearingError::NeedsSecondApproval(format!(
                    "you asked to close {period} early already; a second, different office identity must close it too"
                )));
            }
            None => {
                node.store.request_early_close(period, office).await?;
                let mut waiting = view(node, period)?;
                waiting.message = early_warning(node, period, deadline);
                tracing::info!(office, %period, "early close requested");
                return Ok(waiting);
            }
        },
        None => false,
    };
    tracing::info!(office, %period, early, "closing period");
    node.store
        .close_pair(
            period,
            &node.id,
            PairClose {
                closed_by: node.id.clone(),
                closed_on: today.days_since_epoch(),
                early,
            },
        )
        .await?;
    let done: BTreeMap<String, PairClearing> = before
        .pairs
        .into_iter()
        .filter(|p| p.closed && p.reached)
        .map(|p| (p.peer.clone(), p))
        .collect();
    // Concurrently: one peer that hangs costs the time of one call, not one call each.
    let asks = peers(node).into_iter().map(|peer| {
        let done = done.get(peer.id()).cloned();
        async move {
            match done {
                Some(pair) => pair,
                None => {
                    // Delivering what is owed, closing and reading the statement: a few calls,
                    // each bounded; a peer that hangs costs this much and no more.
                    let bound = node.peers.call_bound() * 3;
                    match tokio::time::timeout(bound, close_with(node, &peer, period, early, today))
                        .await
                    {
                        Ok(pair) => pair,
                        Err(_) => PairClearing {
                            peer: peer.id().to_owned(),
                            note: format!(
                                "{} did not answer within {} s",
                                peer.name(),
                                bound.as_secs()
                            ),
                            ..Default::default()
                        },
                    }
                }
            }
        }
    });
    let pairs = futures::future::join_all(asks).await;
    let mut result = ClearingResult {
        node: node.id.clone(),
        period: period.to_string(),
        pairs,
        early,
        ..Default::default()
    };
    node.store.save_clearing(period, &result).await?;
    result = view(node, period)?;
    result.early = early;
    result.message = close_message(node, period, &result);
    node.store.save_clearing(period, &result).await?;
    tracing::info!(%period, state = result.state, net_position_cents = result.net_position_cents, "clearing recorded");
    Ok(result)
}

/// What an early close will refuse, for the office that asks first.
fn early_warning(node: &Node, period: Period, deadline: Day) -> String {
    format!(
        "{period} can be claimed on until {deadline}. Closing it before then refuses every later claim for services in {period} between {name} and each member, on {name}'s vouchers and on theirs, from the moment that member records the close. A second, different office identity must close it too; until then nothing is closed.",
        name = node.name
    )
}

fn close_message(node: &Node, period: Period, result: &ClearingResult) -> String {
    let open: Vec<&str> = result
        .pairs
        .iter()
        .filter(|p| !p.closed)
        .map(|p| p.peer.as_str())
        .collect();
    let differing = result
        .pairs
        .iter()
        .filter(|p| p.reached && !p.agreed)
        .count();
    let mut message = if open.is_empty() {
        format!("{period} is closed between {} and every member.", node.name)
    } else {
        format!(
            "{period} is closing: not yet closed with {}. Claims with them for {period} are still accepted; close again to complete it.",
            open.join(", ")
        )
    };
    if differing > 0 {
        message.push_str(&format!(
            " The books differ with {differing} member(s): see the claim ids."
        ));
    }
    message
}

/// Closes `period` with one peer and reconciles: what this node still owes it goes first, then
/// the peer records the close and states its account.
async fn close_with(
    node: &Node,
    peer: &Member,
    period: Period,
    early: bool,
    today: Day,
) -> PairClearing {
    let mut pair = PairClearing {
        peer: peer.id().to_owned(),
        ..Default::default()
    };
    let already = match node.store.pair_close(period, peer.id()) {
        Ok(close) => close,
        Err(error) => {
            pair.note = format!("this node's books cannot be read: {error}");
            return pair;
        }
    };
    // A pair the peer closed already only needs the peer's statement.
    let answer = if already.is_some() {
        node.peers
            .statement(peer, &period.to_string())
            .await
            .map_err(|e| e.to_string())
    } else {
        deliver_pending(node, peer.id(), period).await;
        match node
            .peers
            .close_period(peer, &period.to_string(), early)
            .await
        {
            Ok(answer) => Ok(answer.signed_statement),
            Err(crate::peers::PeerError::Call { status, .. })
                if schein_proto::error::reason_of(&status)
                    == Some(ErrorReason::PeriodNotClosable) =>
            {
                pair.note = status.message().to_owned();
                return pair;
            }
            Err(error) => Err(error.to_string()),
        }
    };
    let theirs = answer.and_then(|bytes| {
        let statement = open_statement(peer, &bytes)?;
        let fits = statement.node == peer.id()
            && statement.peer == node.id
            && statement.period == period.to_string();
        if fits {
            Ok(statement)
        } else {
            Err("a statement about something else".into())
        }
    });
    let theirs = match theirs {
        Ok(theirs) => theirs,
        Err(error) => {
            tracing::warn!(peer = peer.id(), %error, "no statement for clearing");
            pair.note = format!("{} did not answer in time: {error}", peer.name());
            return pair;
        }
    };
    let close = PairClose {
        closed_by: node.id.clone(),
        closed_on: today.days_since_epoch(),
        early,
    };
    let recorded = match node.store.close_pair(period, peer.id(), close).await {
        Ok(recorded) => recorded,
        Err(error) => {
            pair.note = format!("the close could not be recorded here: {error}");
            return pair;
        }
    };
    let books = node
        .store
        .liabilities_to(peer.id(), period)
        .and_then(|l| Ok((l, node.store.receivables_from(peer.id(), period)?)));
    let (liabilities, receivables) = match books {
        Ok(books) => books,
        Err(error) => {
            pair.note = format!("this node's books cannot be read: {error}");
            return pair;
        }
    };
    pair.closed = true;
    pair.closed_by = recorded.closed_by;
    pair.reached = true;
    pair.liabilities_cents = total(&liabilities);
    pair.receivables_cents = total(&receivables);
    pair.peer_receivables_cents = total(&theirs.receivables);
    pair.peer_liabilities_cents = total(&theirs.liabilities);
    pair.differing_claim_ids = differing(&liabilities, &theirs.receivables);
    pair.differing_claim_ids
        .extend(differing(&receivables, &theirs.liabilities));
    // Equal totals too: a statement naming one claim twice must not pass.
    pair.agreed = pair.differing_claim_ids.is_empty()
        && pair.liabilities_cents == pair.peer_receivables_cents
        && pair.receivables_cents == pair.peer_liabilities_cents;
    pair
}

/// Delivers what this node's outbox still holds for `issuer` in `period`, before the pair
/// closes: a claim accepted in time must not be refused because its issuer was down. Returns how
/// many are still undelivered.
async fn deliver_pending(node: &Node, issuer: &str, period: Period) -> usize {
    let pending = match node.store.outbox_for(issuer, period) {
        Ok(pending) => pending,
        Err(error) => {
            tracing::error!(%error, "reading the outbox failed");
            return usize::MAX;
        }
    };
    let deliveries = pending.into_iter().map(|due| async move {
        super::outbox::deliver(
            node,
            &due.key,
            &due.settlement_id,
            &due.issuer,
            due.settlement,
        )
        .await
        .is_ok()
    });
    futures::future::join_all(deliveries)
        .await
        .into_iter()
        .filter(|delivered| !delivered)
        .count()
}

/// The peer's side: `caller` closes `period` with this node.
pub async fn closed_by_peer(
    node: &Node,
    caller: &Member,
    period: Period,
    early: bool,
) -> Result<(Vec<u8>, Day), ClearingError> {
    let today = Day::today();
    refuse_future(period, today)?;
    let deadline = own_deadline(node, period)?;
    if !early && today <= deadline {
        return Err(not_closable(format!(
            "{}'s vouchers valid in {period} can be claimed on until {deadline}; {} does not close {period} before then unless {}'s offices close it early",
            node.name,
            node.name,
            caller.name()
        )));
    }
    let undelivered = deliver_pending(node, caller.id(), period).await;
    if undelivered > 0 {
        return Err(not_closable(format!(
            "{} still has claims on {}'s vouchers for {period} to deliver ({undelivered}); try again when they are through",
            node.name,
            caller.name()
        )));
    }
    node.store
        .close_pair(
            period,
            caller.id(),
            PairClose {
                closed_by: caller.id().to_owned(),
                closed_on: today.days_since_epoch(),
                early,
            },
        )
        .await?;
    tracing::info!(peer = caller.id(), %period, early, "pair closed by peer");
    Ok((statement(node, caller.id(), period)?, deadline))
}

/// Reads a period from a request.
pub fn parse_period(text: &str) -> Result<Period, ClearingError> {
    Period::parse(text).map_err(|e| ClearingError::InvalidPeriod(e.to_string()))
}

/// The Statement and ClosePeriod calls of a member node `peer`: its member entry.
pub fn member_of(node: &Node, peer: &crate::pki::Identity) -> Result<Member, ClearingError> {
    node.roster()
        .member(&peer.node)
        .cloned()
        .ok_or(ClearingError::NotAMember)
}
