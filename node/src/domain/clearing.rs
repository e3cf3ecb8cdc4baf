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
    StatementTotals,
};
use schein_proto::{Day, KeyId};

use super::Refusal;
use crate::node::Node;
use crate::roster::{Member, MemberKind};
use crate::store::{PairClose, Side, StoreError};

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

/// Most claims in one page of a statement, whatever a caller asks for: a page stays well
/// inside a message's size limit.
pub const MAX_STATEMENT_PAGE: u32 = 10_000;

/// Bytes of claims in a statement's page when the caller names no limit: well inside the
/// smallest message limit nodes are configured with by default (64 KiB).
const DEFAULT_PAGE_BYTES: usize = 48 * 1024;

/// Which page of a statement a caller asks for (see `StatementRequest`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StatementPage<'a> {
    /// Where to go on: empty for the first page.
    pub token: &'a str,
    /// Most claims; 0: every claim in one statement.
    pub limit: u32,
    /// Most bytes of claims; 0: [`DEFAULT_PAGE_BYTES`].
    pub bytes: u32,
}

/// This node's statement of `period` for `peer`, signed: the page from its token on with at
/// most its limit of claims and of bytes, liabilities first, each side in the order of claim
/// ids, read from the clearing index as it goes; the first page also holds the totals, folded
/// over the index. A limit of 0 asks for every claim in one statement, as nodes of wire
/// version 1 do.
pub fn statement(
    node: &Node,
    peer: &str,
    period: Period,
    page: StatementPage<'_>,
) -> Result<Vec<u8>, ClearingError> {
    let StatementPage {
        token: page_token,
        limit: page_limit,
        bytes: page_bytes,
    } = page;
    let mut statement = PeriodStatement {
        period: period.to_string(),
        node: node.id.clone(),
        peer: peer.to_owned(),
        key_id: KeyId::of(&node.signing_key().verifying_key()).0,
        ..Default::default()
    };
    if page_limit == 0 {
        statement.liabilities = node.store.liabilities_to(peer, period)?;
        statement.receivables = node.store.receivables_from(peer, period)?;
        return Ok(signed::seal(
            Kind::Statement,
            &statement,
            &node.signing_key(),
        ));
    }
    let limit = page_limit.min(MAX_STATEMENT_PAGE) as usize;
    let budget = match page_bytes {
        0 => DEFAULT_PAGE_BYTES,
        n => (n as usize).clamp(1024, 4 * 1024 * 1024),
    };
    statement.paged = true;
    if page_token.is_empty() {
        let (liabilities_count, liabilities_cents) =
            node.store.account_totals(Side::Liabilities, peer, period)?;
        let (receivables_count, receivables_cents) =
            node.store.account_totals(Side::Receivables, peer, period)?;
        statement.totals = Some(StatementTotals {
            liabilities_count,
            liabilities_cents,
            receivables_count,
            receivables_cents,
        });
    }
    let (mut side, after) = match page_token.split_at_checked(1) {
        None => (Side::Liabilities, ""),
        Some(("L", after)) => (Side::Liabilities, after),
        Some(("R", after)) => (Side::Receivables, after),
        Some(_) => {
            return Err(ClearingError::InvalidPeriod(
                "the page token is not one this node gave".into(),
            ));
        }
    };
    let mut after = (!after.is_empty()).then(|| after.to_owned());
    let (mut taken, mut bytes) = (0, 0);
    'sides: loop {
        let tag = if side == Side::Liabilities { "L" } else { "R" };
        for claim in node.store.account(side, peer, period, after.as_deref()) {
            let claim = claim?;
            // Its share of the message: the claim, its field tag and length.
            let cost = prost::Message::encoded_len(&claim) + 4;
            // Always at least one claim, so that every page moves on.
            if taken > 0 && (taken == limit || bytes + cost > budget) {
                statement.next_page_token =
                    format!("{tag}{}", after.as_deref().unwrap_or_default());
                break 'sides;
            }
            taken += 1;
            bytes += cost;
            after = Some(claim.claim_id.clone());
            match side {
                Side::Liabilities => statement.liabilities.push(claim),
                Side::Receivables => statement.receivables.push(claim),
            }
        }
        if side == Side::Receivables {
            break;
        }
        side = Side::Receivables;
        after = None;
    }
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

/// Most differing claim ids a pair's result names; beyond, it says how many more there are.
const MAX_DIFFERING_IDS: usize = 1_000;

/// One side of this node's account, compared claim by claim with the peer's opposite side as
/// its pages come in: both in the order of claim ids, so neither is held whole.
struct Comparison<I: Iterator<Item = Result<ClaimAmount, StoreError>>> {
    mine: std::iter::Peekable<I>,
    mine_cents: i64,
    theirs_cents: i64,
    theirs_count: u64,
    last_theirs: Option<String>,
    differing: Vec<String>,
    differing_count: u64,
}

impl<I: Iterator<Item = Result<ClaimAmount, StoreError>>> Comparison<I> {
    fn new(mine: I) -> Self {
        Self {
            mine: mine.peekable(),
            mine_cents: 0,
            theirs_cents: 0,
            theirs_count: 0,
            last_theirs: None,
            differing: Vec::new(),
            differing_count: 0,
        }
    }

    fn differ(&mut self, claim_id: String) {
        self.differing_count += 1;
        if self.differing.len() < MAX_DIFFERING_IDS {
            self.differing.push(claim_id);
        }
    }

    /// My next claim, if its id is not after `bound` (or at all, without a bound).
    fn next_mine_up_to(&mut self, bound: Option<&str>) -> Result<Option<ClaimAmount>, StoreError> {
        let due = match self.mine.peek() {
            None => false,
            Some(Err(_)) => true,
            Some(Ok(mine)) => bound.is_none_or(|bound| mine.claim_id.as_str() <= bound),
        };
        if !due {
            return Ok(None);
        }
        let mine = self.mine.next().transpose()?;
        if let Some(mine) = &mine {
            self.mine_cents = self.mine_cents.saturating_add(mine.amount_cents);
        }
        Ok(mine)
    }

    /// One claim of the peer's, in order.
    fn theirs(&mut self, claim: ClaimAmount) -> Result<(), StoreError> {
        self.theirs_cents = self.theirs_cents.saturating_add(claim.amount_cents);
        self.theirs_count += 1;
        // Out of order or named twice: it cannot be matched, and the totals will not agree.
        if self
            .last_theirs
            .as_deref()
            .is_some_and(|last| claim.claim_id.as_str() <= last)
        {
            self.differ(claim.claim_id);
            return Ok(());
        }
        let mut matched = false;
        while let Some(mine) = self.next_mine_up_to(Some(&claim.claim_id))? {
            if mine.claim_id == claim.claim_id {
                matched = mine.amount_cents == claim.amount_cents;
                break;
            }
            self.differ(mine.claim_id);
        }
        self.last_theirs = Some(claim.claim_id.clone());
        if !matched {
            self.differ(claim.claim_id);
        }
        Ok(())
    }

    /// Every claim of mine the peer did not name.
    fn finish(&mut self) -> Result<(), StoreError> {
        while let Some(mine) = self.next_mine_up_to(None)? {
            self.differ(mine.claim_id);
        }
        Ok(())
    }
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
            .statement(peer, &period.to_string(), "", MAX_STATEMENT_PAGE)
            .await
            .map_err(|e| e.to_string())
    } else {
        deliver_pending(node, peer.id(), period).await;
        match node
            .peers
            .close_period(peer, &period.to_string(), early, MAX_STATEMENT_PAGE)
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
    let first = match answer.and_then(|bytes| fitting_statement(node, peer, period, &bytes)) {
        Ok(first) => first,
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
    pair.closed = true;
    pair.closed_by = recorded.closed_by;
    match reconcile(node, peer, period, first).await {
        Ok(reconciled) => {
            pair.reached = true;
            pair.liabilities_cents = reconciled.liabilities_cents;
            pair.receivables_cents = reconciled.receivables_cents;
            pair.peer_receivables_cents = reconciled.peer_receivables_cents;
            pair.peer_liabilities_cents = reconciled.peer_liabilities_cents;
            pair.differing_claim_ids = reconciled.differing_claim_ids;
            pair.agreed = reconciled.agreed;
            pair.note = reconciled.note;
        }
        Err(note) => pair.note = note,
    }
    pair
}

/// A statement of `peer` about this node and `period`, checked.
fn fitting_statement(
    node: &Node,
    peer: &Member,
    period: Period,
    bytes: &[u8],
) -> Result<PeriodStatement, String> {
    let statement = open_statement(peer, bytes)?;
    let fits = statement.node == peer.id()
        && statement.peer == node.id
        && statement.period == period.to_string();
    if fits {
        Ok(statement)
    } else {
        Err("a statement about something else".into())
    }
}

/// Most pages of one statement this node reads: 10^9 claims.
const MAX_STATEMENT_PAGES: usize = 100_000;

/// This node's books with `peer` for `period` against the peer's statement, whose first page
/// is `first`; the further pages are asked for one at a time, and each is compared with this
/// node's index as it comes, so neither side is held whole. The `PairClearing` fields it fills;
/// an `Err` is the note for a pair that could not be compared.
async fn reconcile(
    node: &Node,
    peer: &Member,
    period: Period,
    first: PeriodStatement,
) -> Result<PairClearing, String> {
    let books = |e: StoreError| format!("this node's books cannot be read: {e}");
    // What this node owes against what the peer says it is owed, and the other way round.
    let mut owed = Comparison::new(
        node.store
            .account(Side::Liabilities, peer.id(), period, None),
    );
    let mut due = Comparison::new(
        node.store
            .account(Side::Receivables, peer.id(), period, None),
    );
    let totals = first.totals;
    let paged = first.paged;
    let mut page = first;
    let mut pages = 1;
    loop {
        for claim in std::mem::take(&mut page.liabilities) {
            due.theirs(claim).map_err(books)?;
        }
        for claim in std::mem::take(&mut page.receivables) {
            owed.theirs(claim).map_err(books)?;
        }
        if !page.paged || page.next_page_token.is_empty() {
            break;
        }
        if pages == MAX_STATEMENT_PAGES {
            return Err(format!("{}'s statement does not end", peer.name()));
        }
        let bytes = node
            .peers
            .statement(
                peer,
                &period.to_string(),
                &page.next_page_token,
                MAX_STATEMENT_PAGE,
            )
            .await
            .map_err(|e| format!("{} did not answer in time: {e}", peer.name()))?;
        page = fitting_statement(node, peer, period, &bytes)?;
        pages += 1;
    }
    owed.finish().map_err(books)?;
    due.finish().map_err(books)?;
    let mut result = PairClearing {
        liabilities_cents: owed.mine_cents,
        receivables_cents: due.mine_cents,
        peer_receivables_cents: owed.theirs_cents,
        peer_liabilities_cents: due.theirs_cents,
        ..Default::default()
    };
    // A paged statement's pages must add up to the totals on its first.
    let adds_up = !paged
        || totals.is_some_and(|t| {
            t.liabilities_count == due.theirs_count
                && t.liabilities_cents == due.theirs_cents
                && t.receivables_count == owed.theirs_count
                && t.receivables_cents == owed.theirs_cents
        });
    if !adds_up {
        result.note = format!(
            "{}'s statement pages do not add up to its totals",
            peer.name()
        );
    }
    let differing = owed.differing_count + due.differing_count;
    result.differing_claim_ids = owed.differing;
    result.differing_claim_ids.extend(due.differing);
    result.differing_claim_ids.sort();
    result.differing_claim_ids.dedup();
    let named = result.differing_claim_ids.len() as u64;
    if differing > named && named as usize >= MAX_DIFFERING_IDS {
        result.note = format!(
            "{differing} claims differ; the first {MAX_DIFFERING_IDS} of each side are named"
        );
    }
    result.agreed = differing == 0
        && adds_up
        && result.liabilities_cents == result.peer_receivables_cents
        && result.receivables_cents == result.peer_liabilities_cents;
    Ok(result)
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
    page: StatementPage<'_>,
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
    Ok((statement(node, caller.id(), period, page)?, deadline))
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
