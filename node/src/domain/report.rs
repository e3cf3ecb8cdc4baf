//! Reports (DESIGN.md, flow 7): one node's aggregates for a period, read from counters kept as
//! the work happened (O(cells)), with disclosure control applied before anything leaves the
//! node (privacy rule 4). Cells that state the same quantity in several places (the settled
//! total as the sum of categories, of flows, and as its quarter's spend) are hidden together.
//!
//! Funders see figures released weekly: every cell as of the end of the last complete week
//! (Monday 00:00 UTC boundaries), so that polling shows a week's claims at once, never one claim
//! appearing. The node's own office sees live figures; it sees the claims themselves anyway.

use schein_proto::Day;
use schein_proto::disclosure::{Breakdown, Cell};
use schein_proto::period::Period;
use schein_proto::v1::{
    CategoryCell, FlowCell, NodeReport, PeriodSpend, ReasonCell, RejectReason, ReportCell,
};

use crate::node::Node;
use crate::roster::MemberKind;
use crate::store::{Aggregate, Store, StoreError};

/// What a report counts. The store names the cells it counts an event in through this, inside
/// the event's transaction, and the report reads them through it: a new measure is a variant
/// here, its count where its event is stored, and its line in [`compose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure<'a> {
    /// Vouchers issued.
    Issued,
    /// Claims settled (accepted by this node as issuer).
    Settled,
    /// Claims settled, by what they cost.
    Cost(CostKind),
    /// Claims settled, by the city where the voucher was used.
    Flow(&'a str),
    /// Claims rejected, by reason.
    Rejected(RejectReason),
}

/// What a settled claim cost: treatment under the cap, medication outside it, or the emergency
/// pot (an emergency voucher's claims, whatever their category).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostKind {
    Treatment,
    Medication,
    Emergency,
}

impl CostKind {
    pub const ALL: [CostKind; 3] = [
        CostKind::Treatment,
        CostKind::Medication,
        CostKind::Emergency,
    ];

    /// A claim's kind: an emergency voucher's claims are the emergency pot's, counted once there.
    pub fn of(emergency: bool, category: schein_proto::v1::Category) -> Self {
        match (emergency, category) {
            (true, _) => CostKind::Emergency,
            (false, schein_proto::v1::Category::Medication) => CostKind::Medication,
            (false, _) => CostKind::Treatment,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            CostKind::Treatment => "treatment",
            CostKind::Medication => "medication",
            CostKind::Emergency => "emergency",
        }
    }
}

impl Measure<'_> {
    /// The measure's name, the same in every period: what disclosure control hides.
    pub fn key(&self) -> String {
        match self {
            Measure::Issued => "issued".into(),
            Measure::Settled => "settled".into(),
            Measure::Cost(kind) => format!("category/{}", kind.name()),
            Measure::Flow(redeemer) => format!("flow/{redeemer}"),
            Measure::Rejected(reason) => format!("rejected/{}", reason.as_str_name()),
        }
    }

    /// The name of the measure's cell in `period`: `metric/period[/dimension]`.
    pub fn cell(&self, period: Period) -> String {
        let key = self.key();
        match key.split_once('/') {
            Some((metric, dimension)) => format!("{metric}/{period}/{dimension}"),
            None => format!("{key}/{period}"),
        }
    }
}

/// The issuer's reasons (duplicates are decided at the redeemer; closed periods are not
/// counted, as a closed period's counters must not change). Every one is listed in a report,
/// with count 0 too, so that a suppressed reason does not say "at least one".
const REASONS: [RejectReason; 6] = [
    RejectReason::UnknownVoucher,
    RejectReason::Revoked,
    RejectReason::Expired,
    RejectReason::DeadlinePassed,
    RejectReason::OverCap,
    RejectReason::OutOfScope,
];

/// Which figures a reader gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figures {
    /// As of the end of the last complete week: funders.
    Released,
    /// Everything counted so far: this node's office.
    Live,
}

/// The moment a report's figures show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Everything counted up to now, on this day.
    Now(Day),
    /// Everything counted up to the end of this day, the Sunday before the current week.
    EndOf(Day),
}

impl AsOf {
    /// The figures a reader of `figures` gets on `today`.
    pub fn for_reader(figures: Figures, today: Day) -> Self {
        match figures {
            Figures::Live => Self::Now(today),
            Figures::Released => Self::EndOf(Store::released_through(today)),
        }
    }

    fn last_day(self) -> Day {
        match self {
            Self::Now(day) | Self::EndOf(day) => day,
        }
    }
}

/// A node's names and budget, as its report states them.
#[derive(Clone, Debug)]
pub struct Heading {
    pub node: String,
    pub node_name: String,
    pub annual_budget_cents: i64,
}

fn cell(aggregate: Aggregate) -> Cell {
    Cell::new(aggregate.vouchers, aggregate.amount_cents)
}

fn report_cell(aggregate: Aggregate, hidden: bool) -> ReportCell {
    if hidden {
        ReportCell {
            suppressed: true,
            ..Default::default()
        }
    } else {
        ReportCell {
            suppressed: false,
            vouchers: aggregate.vouchers,
            count: aggregate.count,
            amount_cents: aggregate.amount_cents,
        }
    }
}

/// The cells of one period, by measure.
struct PeriodCells {
    issued: Aggregate,
    settled: Aggregate,
    categories: Vec<Aggregate>,
    rejected: Vec<Aggregate>,
    flows: Vec<Aggregate>,
}

/// Names of the measures whose cells may be hidden: `issued`, `settled`, `category/…`,
/// `rejected/…`, `flow/…`.
type Hidden = std::collections::BTreeSet<String>;

fn load(
    read: &impl Fn(&str) -> Result<Aggregate, StoreError>,
    period: Period,
    redeemers: &[String],
) -> Result<PeriodCells, StoreError> {
    let get = |measure: Measure<'_>| read(&measure.cell(period));
    Ok(PeriodCells {
        issued: get(Measure::Issued)?,
        settled: get(Measure::Settled)?,
        categories: CostKind::ALL
            .iter()
            .map(|kind| get(Measure::Cost(*kind)))
            .collect::<Result<_, _>>()?,
        rejected: REASONS
            .iter()
            .map(|reason| get(Measure::Rejected(*reason)))
            .collect::<Result<_, _>>()?,
        flows: redeemers
            .iter()
            .map(|redeemer| get(Measure::Flow(redeemer)))
            .collect::<Result<_, _>>()?,
    })
}

/// The measures one period must hide, given those hidden already: small cells, and partners
/// so that no hidden cell follows from the published sums (see [`Breakdown`]).
fn hide_in_period(cells: &PeriodCells, hidden: &Hidden, redeemers: &[String]) -> Hidden {
    let mut out = hidden.clone();
    // Vouchers issued and the rejected cells have no published total: primary suppression is
    // enough (their periods' sums hold between hidden cells only).
    if cell(cells.issued).sensitive() {
        out.insert(Measure::Issued.key());
    }
    for (reason, a) in REASONS.iter().zip(&cells.rejected) {
        if cell(*a).sensitive() {
            out.insert(Measure::Rejected(*reason).key());
        }
    }
    let names: [Vec<String>; 2] = [
        CostKind::ALL
            .iter()
            .map(|k| Measure::Cost(*k).key())
            .collect(),
        redeemers.iter().map(|r| Measure::Flow(r).key()).collect(),
    ];
    let group = |parts: &[Aggregate], names: &[String]| -> Vec<Cell> {
        parts
            .iter()
            .zip(names)
            .map(|(a, name)| Cell {
                hidden: out.contains(name),
                ..cell(*a)
            })
            .collect()
    };
    let mut breakdown = Breakdown {
        total: Cell {
            hidden: out.contains(&Measure::Settled.key()),
            ..cell(cells.settled)
        },
        groups: vec![
            group(&cells.categories, &names[0]),
            group(&cells.flows, &names[1]),
        ],
    };
    breakdown.suppress();
    if breakdown.total.hidden {
        out.insert(Measure::Settled.key());
    }
    for (parts, names) in breakdown.groups.iter().zip(&names) {
        for (part, name) in parts.iter().zip(names) {
            if part.hidden {
                out.insert(name.clone());
            }
        }
    }
    out
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    InvalidPeriod(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl super::Refusal for ReportError {
    fn reason(&self) -> schein_proto::v1::ErrorReason {
        match self {
            ReportError::InvalidPeriod(_) => schein_proto::v1::ErrorReason::InvalidArgument,
            ReportError::Store(error) => super::Refusal::reason(error),
        }
    }
}

/// The report for `period` (as text: 2026-Q4, 2026-11, 2026) that `reader` gets today: live
/// figures for this node's office, which sees its claims one by one anyway; for funders, as of
/// the end of the last complete week (privacy rule 4).
pub fn for_reader(
    node: &Node,
    reader: &crate::pki::Identity,
    period: &str,
) -> Result<NodeReport, ReportError> {
    let period = Period::parse(period).map_err(|e| ReportError::InvalidPeriod(e.to_string()))?;
    tracing::info!(reader = %reader, %period, "report read");
    let figures = match reader.role {
        crate::pki::Role::Office => Figures::Live,
        _ => Figures::Released,
    };
    Ok(build(node, period, Day::today(), figures)?)
}

/// The whole federation's reports for `period` as `reader` reads them: this node's own, and
/// every other member node's as it answers within the peer timeout (asked all at once, with
/// this node's certificate: nodes read what funders read). Those that did not answer are named.
pub async fn federation(
    node: &Node,
    reader: &crate::pki::Identity,
    period: &str,
) -> Result<(Vec<NodeReport>, Vec<String>), ReportError> {
    let own = for_reader(node, reader, period)?;
    let roster = node.roster();
    let peers: Vec<_> = roster
        .members()
        .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
        .collect();
    let asked = peers.iter().map(|member| node.peers.report(member, period));
    let answers = futures::future::join_all(asked).await;
    let mut reports = vec![own];
    let mut unanswered = Vec::new();
    for (member, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(report) => reports.push(report),
            Err(error) => {
                tracing::info!(peer = member.id(), %error, "a member's report could not be read");
                unanswered.push(member.name().to_owned());
            }
        }
    }
    Ok((reports, unanswered))
}

/// The report of `node` for `period`, suppressed, with the figures a reader of `figures` gets
/// on `today`.
pub fn build(
    node: &Node,
    period: Period,
    today: Day,
    figures: Figures,
) -> Result<NodeReport, StoreError> {
    let as_of = AsOf::for_reader(figures, today);
    let read = |name: &str| match figures {
        Figures::Live => node.store.aggregate(name),
        Figures::Released => node.store.released_aggregate(name, today),
    };
    let year = period.year();
    // Every city this node's vouchers were used in this year, members or not (a city that left
    // the roster must not become the difference between the total and the rest); a city that
    // is not a member only once its figures are released.
    let roster = node.roster();
    let mut redeemers: Vec<String> = roster
        .members()
        .filter(|m| m.entry.kind == MemberKind::Node)
        .map(|m| m.id().to_owned())
        .collect();
    for dim in node
        .store
        .dimensions(&Measure::Flow("").cell(Period::Year(year)))?
    {
        if !redeemers.contains(&dim)
            && read(&Measure::Flow(&dim).cell(Period::Year(year)))?.count > 0
        {
            redeemers.push(dim);
        }
    }
    let heading = Heading {
        node: node.id.clone(),
        node_name: node.name.clone(),
        annual_budget_cents: node.annual_budget_cents,
    };
    compose(&heading, &redeemers, period, as_of, read)
}

/// The report for `period` from cells read by name ([`Measure::cell`]) with `read`, all as of the
/// same moment `as_of`, with a column for each of `redeemers`.
///
/// Counts add up across periods (the months make their quarter, the quarters their year), so
/// a measure hidden in any period of the year is hidden in all of them: no published
/// difference of periods can give a hidden cell away.
pub fn compose(
    heading: &Heading,
    redeemers: &[String],
    period: Period,
    as_of: AsOf,
    read: impl Fn(&str) -> Result<Aggregate, StoreError>,
) -> Result<NodeReport, StoreError> {
    let year = period.year();
    let mut periods: Vec<Period> = (1..=12).map(|m| Period::Month(year, m)).collect();
    periods.extend(Period::quarters(year));
    periods.push(Period::Year(year));
    let all: Vec<PeriodCells> = periods
        .iter()
        .map(|p| load(&read, *p, redeemers))
        .collect::<Result<_, _>>()?;
    let mut hidden = Hidden::new();
    loop {
        let mut next = hidden.clone();
        for cells in &all {
            next.extend(hide_in_period(cells, &hidden, redeemers));
        }
        if next == hidden {
            break;
        }
        hidden = next;
    }

    let index = periods
        .iter()
        .position(|p| *p == period)
        .unwrap_or(periods.len() - 1);
    let cells = &all[index];
    let spent = all[periods.len() - 1].settled;
    let settled_hidden = hidden.contains(&Measure::Settled.key());
    let budget = heading.annual_budget_cents;
    // The forecast is the spend times a known factor: it is published only with the spend.
    let forecast = (!settled_hidden).then(|| forecast(spent.amount_cents, year, as_of.last_day()));
    let quarter_cells = &all[12..16];
    Ok(NodeReport {
        node: heading.node.clone(),
        node_name: heading.node_name.clone(),
        period: period.to_string(),
        issued: Some(report_cell(
            cells.issued,
            hidden.contains(&Measure::Issued.key()),
        )),
        claimed_vouchers: Some(report_cell(
            Aggregate {
                count: cells.settled.vouchers,
                vouchers: cells.settled.vouchers,
                amount_cents: 0,
            },
            settled_hidden,
        )),
        settled: Some(report_cell(cells.settled, settled_hidden)),
        rejected: REASONS
            .iter()
            .zip(&cells.rejected)
            .map(|(reason, a)| ReasonCell {
                reason: *reason as i32,
                cell: Some(report_cell(
                    *a,
                    hidden.contains(&Measure::Rejected(*reason).key()),
                )),
            })
            .collect(),
        categories: CostKind::ALL
            .iter()
            .zip(&cells.categories)
            .map(|(kind, a)| CategoryCell {
                category: kind.name().to_owned(),
                cell: Some(report_cell(
                    *a,
                    hidden.contains(&Measure::Cost(*kind).key()),
                )),
            })
            .collect(),
        flows: redeemers
            .iter()
            .zip(&cells.flows)
            .map(|(redeemer, a)| FlowCell {
                redeemer: redeemer.clone(),
                cell: Some(report_cell(
                    *a,
                    hidden.contains(&Measure::Flow(redeemer).key()),
                )),
            })
            .collect(),
        annual_budget_cents: budget,
        spent_this_year: Some(report_cell(spent, settled_hidden)),
        forecast_cents: forecast,
        forecast_exceeds_budget: forecast.is_some_and(|f| f > budget),
        quarters: Period::quarters(year)
            .iter()
            .zip(quarter_cells)
            .map(|(q, c)| PeriodSpend {
                period: q.to_string(),
                cell: Some(report_cell(c.settled, settled_hidden)),
            })
            .collect(),
        released_through: match as_of {
            AsOf::EndOf(day) => Some(day.into()),
            AsOf::Now(_) => None,
        },
    })
}

/// The year's spend extrapolated linearly from the days its figures cover (up to `through`); a
/// past year's is its spend.
fn forecast(spent: i64, year: i32, through: Day) -> i64 {
    let Some(date) = through.to_date() else {
        return spent;
    };
    if date.year() != year {
        return spent;
    }
    let days_in_year = if time::util::is_leap_year(year) {
        366
    } else {
        365
    };
    let day = i64::from(date.ordinal());
    spent.saturating_mul(days_in_year) / day.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of 2026-03 from cells given by name.
    fn report_of(cells: &[(&str, Aggregate)]) -> NodeReport {
        let heading = Heading {
            node: "leipzig".into(),
            node_name: "Leipzig".into(),
            annual_budget_cents: 1_000_000,
        };
        let today = Day::parse("2026-07-02").unwrap();
        compose(
            &heading,
            &["leipzig".into()],
            Period::Month(2026, 3),
            AsOf::Now(today),
            |name| {
                Ok(cells
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, a)| *a)
                    .unwrap_or_default())
            },
        )
        .unwrap()
    }

    fn settled(vouchers: u64) -> Vec<(&'static str, Aggregate)> {
        let a = Aggregate {
            count: vouchers,
            vouchers,
            amount_cents: 10_000 * vouchers as i64,
        };
        [
            "settled/2026-03",
            "settled/2026-Q1",
            "settled/2026",
            "category/2026-03/treatment",
            "category/2026-Q1/treatment",
            "category/2026/treatment",
            "flow/2026-03/leipzig",
            "flow/2026-Q1/leipzig",
            "flow/2026/leipzig",
        ]
        .into_iter()
        .map(|n| (n, a))
        .collect()
    }

    #[test]
    fn every_reason_is_listed_with_count_zero_too() {
        let mut cells = settled(8);
        cells.push((
            "rejected/2026-03/REJECT_REASON_OVER_CAP",
            Aggregate {
                count: 2,
                vouchers: 2,
                amount_cents: 0,
            },
        ));
        for name in [
            "rejected/2026-Q1/REJECT_REASON_OVER_CAP",
            "rejected/2026/REJECT_REASON_OVER_CAP",
        ] {
            cells.push((name, cells.last().unwrap().1));
        }
        let report = report_of(&cells);
        let reasons: Vec<RejectReason> = report.rejected.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons, REASONS);
        for r in &report.rejected {
            let cell = r.cell.as_ref().unwrap();
            if r.reason() == RejectReason::OverCap {
                assert!(cell.suppressed, "2 vouchers");
            } else {
                assert_eq!((cell.suppressed, cell.count), (false, 0));
            }
        }
    }

    #[test]
    fn a_suppressed_spend_has_no_forecast() {
        let small = report_of(&settled(3));
        assert!(small.spent_this_year.as_ref().unwrap().suppressed);
        assert_eq!(small.forecast_cents, None);
        assert!(!small.forecast_exceeds_budget);
        let shown = report_of(&settled(8));
        assert!(!shown.spent_this_year.as_ref().unwrap().suppressed);
        assert_eq!(shown.forecast_cents, Some(80_000 * 365 / 183));
    }

    #[test]
    fn the_forecast_extrapolates_the_current_year_only() {
        let day = schein_proto::Day::parse("2026-07-02").unwrap();
        assert_eq!(forecast(100_000, 2026, day), 100_000 * 365 / 183);
        assert_eq!(forecast(100_000, 2025, day), 100_000);
    }
}
