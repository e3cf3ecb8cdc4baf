//! Reports (DESIGN.md, flow 7): one node's aggregates for a period, read from counters kept as
//! the work happened (O(cells)), with disclosure control applied before anything leaves the
//! node (privacy rule 4). Cells that state the same quantity in several places (the settled
//! total as the sum of categories, of flows, and as its quarter's spend) are hidden together.

use schein_proto::disclosure::{Cell, Table};
use schein_proto::period::Period;
use schein_proto::v1::{
    CategoryCell, FlowCell, NodeReport, PeriodSpend, ReasonCell, RejectReason, ReportCell,
};

use crate::node::Node;
use crate::roster::MemberKind;
use crate::store::{Aggregate, StoreError, cell_name};

const CATEGORIES: [&str; 3] = ["treatment", "medication", "emergency"];
const REASONS: [RejectReason; 8] = [
    RejectReason::UnknownVoucher,
    RejectReason::Revoked,
    RejectReason::Expired,
    RejectReason::DeadlinePassed,
    RejectReason::OverCap,
    RejectReason::Duplicate,
    RejectReason::PeriodClosed,
    RejectReason::OutOfScope,
];

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

/// A one-column table of `parts` whose total is `total` (distinct vouchers may be fewer than
/// the sum of the parts'), suppressed, with the total hidden beforehand if `total_hidden`.
fn column(parts: &[Aggregate], total: Aggregate, total_hidden: bool) -> Table {
    let cells: Vec<Vec<Cell>> = parts.iter().map(|a| vec![cell(*a)]).collect();
    let rows: Vec<u64> = parts.iter().map(|a| a.vouchers).collect();
    let mut table = Table::new(cells, rows, vec![total.vouchers], total.vouchers);
    table.column_totals[0].hidden = total_hidden;
    table.total.hidden = total_hidden;
    table.suppress();
    table
}

/// The report of `node` for `period`, suppressed.
pub fn build(
    node: &Node,
    period: Period,
    today: schein_proto::Day,
) -> Result<NodeReport, StoreError> {
    let store = &node.store;
    let get =
        |metric: &str, p: Period, dim: Option<&str>| store.aggregate(&cell_name(metric, p, dim));
    let issued = get("issued", period, None)?;
    let settled = get("settled", period, None)?;
    let categories = CATEGORIES
        .iter()
        .map(|c| get("category", period, Some(c)))
        .collect::<Result<Vec<_>, _>>()?;
    let rejected = REASONS
        .iter()
        .map(|r| get("rejected", period, Some(r.as_str_name())))
        .collect::<Result<Vec<_>, _>>()?;
    let roster = node.roster();
    let redeemers: Vec<String> = roster
        .members()
        .filter(|m| m.entry.kind == MemberKind::Node)
        .map(|m| m.id().to_owned())
        .collect();
    let flows = redeemers
        .iter()
        .map(|r| get("flow", period, Some(r)))
        .collect::<Result<Vec<_>, _>>()?;
    let year = Period::Year(period.year());
    let spent = get("settled", year, None)?;
    let quarters = Period::quarters(period.year())
        .iter()
        .map(|q| get("settled", *q, None))
        .collect::<Result<Vec<_>, _>>()?;

    // The settled total appears in three tables (and as a quarter of the year's): whatever
    // hides it in one hides it in all, until nothing changes.
    let mut settled_hidden = Cell::new(settled.vouchers, settled.amount_cents).sensitive();
    let mut year_hidden = cell(spent).sensitive();
    let (category_table, flow_table, quarter_table, rejected_table) = loop {
        let category_table = column(&categories, settled, settled_hidden);
        let flow_table = column(&flows, settled, settled_hidden);
        let mut quarter_table = column(&quarters, spent, year_hidden);
        if let Period::Quarter(_, q) = period {
            let index = usize::from(q) - 1;
            if settled_hidden && !quarter_table.cells[index][0].hidden {
                quarter_table.cells[index][0].hidden = true;
                quarter_table.suppress();
            }
        }
        let rejected_total = Aggregate {
            count: rejected.iter().map(|a| a.count).sum(),
            vouchers: rejected.iter().map(|a| a.vouchers).sum(),
            amount_cents: 0,
        };
        let rejected_table = column(&rejected, rejected_total, false);
        let quarter_hides_settled = matches!(period, Period::Quarter(_, q)
            if quarter_table.cells[usize::from(q) - 1][0].hidden);
        let now_settled_hidden = settled_hidden
            || category_table.total.hidden
            || flow_table.total.hidden
            || quarter_hides_settled;
        let now_year_hidden = year_hidden || quarter_table.total.hidden;
        if now_settled_hidden == settled_hidden && now_year_hidden == year_hidden {
            break (category_table, flow_table, quarter_table, rejected_table);
        }
        settled_hidden = now_settled_hidden;
        year_hidden = now_year_hidden;
    };

    let budget = node.annual_budget_cents;
    let (forecast, exceeds) = if year_hidden {
        (0, false)
    } else {
        let forecast = forecast(spent.amount_cents, period.year(), today);
        (forecast, forecast > budget)
    };
    Ok(NodeReport {
        node: node.id.clone(),
        node_name: node.name.clone(),
        period: period.to_string(),
        issued: Some(report_cell(issued, cell(issued).sensitive())),
        claimed_vouchers: Some(report_cell(
            Aggregate {
                count: settled.vouchers,
                vouchers: settled.vouchers,
                amount_cents: 0,
            },
            settled_hidden,
        )),
        settled: Some(report_cell(settled, settled_hidden)),
        rejected: REASONS
            .iter()
            .zip(&rejected)
            .enumerate()
            .filter(|(_, (_, a))| a.count > 0)
            .map(|(i, (reason, a))| ReasonCell {
                reason: *reason as i32,
                cell: Some(report_cell(*a, rejected_table.cells[i][0].hidden)),
            })
            .collect(),
        categories: CATEGORIES
            .iter()
            .zip(&categories)
            .enumerate()
            .map(|(i, (name, a))| CategoryCell {
                category: (*name).to_owned(),
                cell: Some(report_cell(*a, category_table.cells[i][0].hidden)),
            })
            .collect(),
        flows: redeemers
            .iter()
            .zip(&flows)
            .enumerate()
            .map(|(i, (redeemer, a))| FlowCell {
                redeemer: redeemer.clone(),
                cell: Some(report_cell(*a, flow_table.cells[i][0].hidden)),
            })
            .collect(),
        annual_budget_cents: budget,
        spent_this_year: Some(report_cell(spent, year_hidden)),
        forecast_cents: forecast,
        forecast_exceeds_budget: exceeds,
        quarters: Period::quarters(period.year())
            .iter()
            .zip(&quarters)
            .enumerate()
            .map(|(i, (q, a))| PeriodSpend {
                period: q.to_string(),
                cell: Some(report_cell(*a, quarter_table.cells[i][0].hidden)),
            })
            .collect(),
    })
}

/// The year's spend extrapolated linearly from the days gone by; a past year's is its spend.
fn forecast(spent: i64, year: i32, today: schein_proto::Day) -> i64 {
    let Some(date) = today.to_date() else {
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

    #[test]
    fn the_forecast_extrapolates_the_current_year_only() {
        let day = schein_proto::Day::parse("2026-07-02").unwrap();
        assert_eq!(forecast(100_000, 2026, day), 100_000 * 365 / 183);
        assert_eq!(forecast(100_000, 2025, day), 100_000);
    }
}
