//! `schein report` (funders and offices) and `schein clearing` (offices): one node's report, or
//! the federation's, asked of every member and merged; as a table, JSON, CSV or an SVG chart.
//! Nodes suppress small cells before they answer; the merged view only adds up what was
//! published, and shows a total only if all its parts were.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use schein_node::client::IdentityFile;
use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{
    ClearingRequest, ClearingResult, ClearingState, NodeReport, ReportCell, ReportRequest,
};
use serde_json::json;

use crate::Outcome;
use crate::client::Client;
use crate::output::{Output, emit, outln, reject_reason_code};

#[derive(Subcommand, Debug)]
pub(crate) enum ClearingCommand {
    /// Close a period: exchange signed statements with every node, reconcile, record the
    /// result. Settlements for the period are refused afterwards.
    Close { period: String },
    /// Show the result of a closed period.
    Show { period: String },
}

/// Options of `schein report`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReportArgs {
    /// 2026-Q4, 2026-11 or 2026.
    #[arg(long)]
    period: String,
    /// Ask every member of the federation and merge.
    #[arg(long)]
    federation: bool,
    /// Comma-separated values, for a spreadsheet.
    #[arg(long)]
    csv: bool,
    /// Also write a chart of spend against budget per city and quarter.
    #[arg(long, value_name = "FILE.svg")]
    svg: Option<PathBuf>,
}

fn shown(cell: Option<&ReportCell>) -> Option<&ReportCell> {
    cell.filter(|c| !c.suppressed)
}

fn amount(cell: Option<&ReportCell>) -> String {
    shown(cell).map_or_else(
        || "(suppressed)".into(),
        |c| Cents(c.amount_cents).to_string(),
    )
}

fn count(cell: Option<&ReportCell>) -> String {
    shown(cell).map_or_else(|| "(suppressed)".into(), |c| c.count.to_string())
}

fn cell_json(cell: Option<&ReportCell>) -> serde_json::Value {
    match shown(cell) {
        Some(c) => {
            json!({"count": c.count, "vouchers": c.vouchers, "amount_cents": c.amount_cents})
        }
        None => json!("suppressed"),
    }
}

pub(crate) async fn fetch(client: &Client, period: &str) -> anyhow::Result<NodeReport> {
    Ok(ReportsClient::new(client.channel())
        .report(ReportRequest {
            period: period.to_owned(),
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

/// Asks every member, showing progress on standard error; the reports and who did not answer.
/// Asks every member at once, each within the client's timeout (connecting included), and
/// returns what came back in time and who did not answer, with the reason. Progress goes to
/// standard error: one line for each node that did not answer, and a count.
pub(crate) async fn fetch_all(
    client: &Client,
    period: &str,
) -> anyhow::Result<(Vec<NodeReport>, Vec<String>)> {
    let members = ReportsClient::new(client.channel())
        .members(schein_proto::v1::MembersRequest {})
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner()
        .members;
    let within = client.timeout;
    eprintln!(
        "asking {} nodes for {period}, each within {} s …",
        members.len(),
        within.as_secs()
    );
    let asks = members.into_iter().map(|member| {
        let identity = IdentityFile {
            node: member.id.clone(),
            node_name: member.name.clone(),
            endpoint: member.endpoint.clone(),
            node_ca: member.ca_cert_pem.clone(),
            ..client.identity.clone()
        };
        async move {
            let ask = async {
                let other = Client::from_identity(identity, None, within).await?;
                fetch(&other, period).await
            };
            // One bound for connecting and answering together.
            let answer = match tokio::time::timeout(within, ask).await {
                Ok(answer) => answer,
                Err(_) => Err(anyhow!("no answer within {} s", within.as_secs())),
            };
            if let Err(error) = &answer {
                eprintln!("  {:<12} did not answer: {error:#}", member.id);
            }
            (member.id, answer)
        }
    });
    let mut reports = Vec::new();
    let mut missing = Vec::new();
    for (id, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(report) => reports.push(report),
            Err(_) => missing.push(id),
        }
    }
    eprintln!(
        "{} of {} nodes answered",
        reports.len(),
        reports.len() + missing.len()
    );
    Ok((reports, missing))
}

pub(crate) async fn report(
    client: &Client,
    args: ReportArgs,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let (reports, missing) = if args.federation {
        fetch_all(client, &args.period).await?
    } else {
        (vec![fetch(client, &args.period).await?], vec![])
    };
    if reports.is_empty() {
        return Err(anyhow!("no node answered"));
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, chart(&reports))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if out.json {
        let nodes: Vec<_> = reports.iter().map(report_json).collect();
        outln!(
            "{}",
            json!({"period": args.period, "nodes": nodes, "not_answered": missing})
        );
    } else if args.csv {
        emit(format_args!("{}", csv(&reports)));
    } else {
        print_table(&reports, &missing);
    }
    if let Some(path) = &args.svg {
        eprintln!("chart written to {}", path.display());
    }
    Ok(Outcome::Done)
}

fn report_json(r: &NodeReport) -> serde_json::Value {
    json!({
        "node": r.node,
        "name": r.node_name,
        "period": r.period,
        "vouchers_issued": cell_json(r.issued.as_ref()),
        "vouchers_with_claims": cell_json(r.claimed_vouchers.as_ref()),
        "claims_settled": cell_json(r.settled.as_ref()),
        "claims_rejected": r.rejected.iter().map(|c| json!({
            "reason": schein_proto::v1::RejectReason::try_from(c.reason).ok().and_then(reject_reason_code),
            "cell": cell_json(c.cell.as_ref()),
        })).collect::<Vec<_>>(),
        "categories": r.categories.iter().map(|c| json!({"category": c.category, "cell": cell_json(c.cell.as_ref())})).collect::<Vec<_>>(),
        "flows": r.flows.iter().map(|f| json!({"redeemer": f.redeemer, "cell": cell_json(f.cell.as_ref())})).collect::<Vec<_>>(),
        "annual_budget_cents": r.annual_budget_cents,
        "spent_this_year": cell_json(r.spent_this_year.as_ref()),
        "forecast_cents": r.forecast_cents.map_or(json!("suppressed"), |f| json!(f)),
        "forecast_exceeds_budget": r.forecast_exceeds_budget,
        "released_through": r.released_through.map(|d| Day::from(d).to_string()),
    })
}

pub(crate) fn print_table(reports: &[NodeReport], missing: &[String]) {
    emit(format_args!("{}", table(reports, missing)));
}

/// When a report's figures were taken: released weekly to funders, live for the office.
fn as_of(r: &NodeReport) -> String {
    match r.released_through {
        Some(day) => format!("figures up to the end of {}", Day::from(day)),
        None => "live figures".into(),
    }
}

/// The reports as text: one node's figures in full; a federation's as one line per node, the
/// totals, the rejections by reason, and the largest flows between cities, so that fifty nodes
/// still fit a terminal. The full matrix is in `--csv` and `--json`.
fn table(reports: &[NodeReport], missing: &[String]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = match reports {
        [one] if missing.is_empty() => write_node(&mut text, one),
        _ => write_federation(&mut text, reports, missing),
    };
    text
}

/// How many flows and cities the text report lists; the rest are counted.
const LISTED: usize = 15;

fn reason_name(reason: i32) -> &'static str {
    schein_proto::v1::RejectReason::try_from(reason)
        .ok()
        .and_then(reject_reason_code)
        .unwrap_or("other")
}

fn write_node(t: &mut impl std::fmt::Write, r: &NodeReport) -> std::fmt::Result {
    writeln!(
        t,
        "{} ({}) — {}, {}",
        r.node_name,
        r.node,
        r.period,
        as_of(r)
    )?;
    writeln!(t, "  vouchers issued          {}", count(r.issued.as_ref()))?;
    writeln!(
        t,
        "  vouchers with claims     {}",
        count(r.claimed_vouchers.as_ref())
    )?;
    writeln!(
        t,
        "  claims settled           {}  {}",
        count(r.settled.as_ref()),
        amount(r.settled.as_ref())
    )?;
    for c in &r.rejected {
        writeln!(
            t,
            "  claims rejected {:<17} {}",
            format!("({})", reason_name(c.reason)),
            count(c.cell.as_ref())
        )?;
    }
    for c in &r.categories {
        writeln!(t, "  {:<24} {}", c.category, amount(c.cell.as_ref()))?;
    }
    writeln!(
        t,
        "  budget {}, spent this year {}, forecast {}{}",
        Cents(r.annual_budget_cents),
        amount(r.spent_this_year.as_ref()),
        r.forecast_cents
            .map_or_else(|| "(suppressed)".into(), |f| Cents(f).to_string()),
        if r.forecast_exceeds_budget {
            "  WARNING: the forecast exceeds the budget"
        } else {
            ""
        }
    )?;
    let flows: Vec<Flow<'_>> = flows_of(std::slice::from_ref(r));
    if !flows.is_empty() {
        writeln!(t, "  what its vouchers cost in each city:")?;
        write_flows(t, &flows, false)?;
    }
    Ok(())
}

/// One cell of the flow matrix.
struct Flow<'r> {
    issuer: &'r str,
    redeemer: &'r str,
    cell: Option<&'r ReportCell>,
}

fn flows_of(reports: &[NodeReport]) -> Vec<Flow<'_>> {
    reports
        .iter()
        .flat_map(|r| {
            r.flows.iter().map(move |f| Flow {
                issuer: &r.node,
                redeemer: &f.redeemer,
                cell: f.cell.as_ref(),
            })
        })
        .collect()
}

/// The published non-empty flows, largest first, at most [`LISTED`]; then what is not listed.
fn write_flows(
    t: &mut impl std::fmt::Write,
    flows: &[Flow<'_>],
    with_issuer: bool,
) -> std::fmt::Result {
    let mut published: Vec<(&Flow<'_>, &ReportCell)> = flows
        .iter()
        .filter_map(|f| shown(f.cell).map(|c| (f, c)))
        .filter(|(_, c)| c.count > 0)
        .collect();
    published.sort_by(|a, b| {
        b.1.amount_cents
            .cmp(&a.1.amount_cents)
            .then_with(|| (a.0.issuer, a.0.redeemer).cmp(&(b.0.issuer, b.0.redeemer)))
    });
    for (flow, cell) in published.iter().take(LISTED) {
        let name = if with_issuer {
            format!("{} → {}", flow.issuer, flow.redeemer)
        } else {
            flow.redeemer.to_owned()
        };
        writeln!(
            t,
            "    {name:<28} {:>16}  {:>4} vouchers",
            Cents(cell.amount_cents).to_string(),
            cell.vouchers
        )?;
    }
    let suppressed = flows.iter().filter(|f| shown(f.cell).is_none()).count();
    if published.is_empty() && suppressed == 0 {
        writeln!(t, "    (none)")?;
    }
    let unlisted = published.len().saturating_sub(LISTED);
    if unlisted > 0 || suppressed > 0 {
        writeln!(
            t,
            "    ({unlisted} more published, {suppressed} suppressed; every cell: --csv or --json)"
        )?;
    }
    Ok(())
}

/// The sum of the published cells, and how many were suppressed: a total is shown exactly if
/// every part was published, else as "at least" what was, with the suppressed parts counted. It
/// publishes nothing the parts did not.
struct Sum {
    cents: i64,
    count: u64,
    suppressed: usize,
}

impl Sum {
    fn of<'c>(cells: impl IntoIterator<Item = Option<&'c ReportCell>>) -> Self {
        let mut sum = Sum {
            cents: 0,
            count: 0,
            suppressed: 0,
        };
        for cell in cells {
            match shown(cell) {
                Some(c) => {
                    sum.cents = sum.cents.saturating_add(c.amount_cents);
                    sum.count += c.count;
                }
                None => sum.suppressed += 1,
            }
        }
        sum
    }

    fn amount(&self) -> String {
        format!("{}{}", self.bound(), Cents(self.cents))
    }

    fn count(&self) -> String {
        format!("{}{}", self.bound(), self.count)
    }

    /// "≥ " when a part is missing: the sum of what was published is a lower bound.
    fn bound(&self) -> &'static str {
        if self.suppressed > 0 { "≥ " } else { "" }
    }

    /// How many parts were suppressed, for after the figures.
    fn note(&self) -> String {
        match self.suppressed {
            0 => String::new(),
            n => format!(" (+{n} suppressed)"),
        }
    }
}

fn write_federation(
    t: &mut impl std::fmt::Write,
    reports: &[NodeReport],
    missing: &[String],
) -> std::fmt::Result {
    let period = reports.first().map_or("", |r| r.period.as_str());
    let asked = reports.len() + missing.len();
    let moments: std::collections::BTreeSet<String> = reports.iter().map(as_of).collect();
    writeln!(
        t,
        "Federation report {period}: {} of {asked} nodes answered; {}",
        reports.len(),
        moments.into_iter().collect::<Vec<_>>().join(" / ")
    )?;
    let mut nodes = comfy_table::Table::new();
    nodes
        .load_preset(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED)
        .set_header([
            "node",
            "issued",
            "with claims",
            "settled",
            "amount",
            "spent this year",
            "forecast",
        ]);
    let short =
        |cell: Option<&ReportCell>| shown(cell).map_or("–".into(), |c| c.count.to_string());
    let euros = |cell: Option<&ReportCell>| {
        shown(cell).map_or("–".into(), |c| Cents(c.amount_cents).to_string())
    };
    for r in reports {
        let forecast = r.forecast_cents.map_or("–".into(), |f| {
            let mark = if r.forecast_exceeds_budget { " !" } else { "" };
            format!("{}{mark}", Cents(f))
        });
        nodes.add_row([
            r.node.clone(),
            short(r.issued.as_ref()),
            short(r.claimed_vouchers.as_ref()),
            short(r.settled.as_ref()),
            euros(r.settled.as_ref()),
            euros(r.spent_this_year.as_ref()),
            forecast,
        ]);
    }
    for column in 1..=6 {
        if let Some(column) = nodes.column_mut(column) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    writeln!(t, "{nodes}")?;
    writeln!(
        t,
        "  (– suppressed: fewer than 5 vouchers; ! the forecast exceeds the node's budget)"
    )?;
    let settled = Sum::of(reports.iter().map(|r| r.settled.as_ref()));
    let issued = Sum::of(reports.iter().map(|r| r.issued.as_ref()));
    writeln!(
        t,
        "Totals: vouchers issued {}{}; claims settled {}, {}{}",
        issued.count(),
        issued.note(),
        settled.count(),
        settled.amount(),
        settled.note()
    )?;
    let over: Vec<&str> = reports
        .iter()
        .filter(|r| r.forecast_exceeds_budget)
        .map(|r| r.node.as_str())
        .collect();
    if !over.is_empty() {
        writeln!(
            t,
            "WARNING: the forecast exceeds the budget at {}",
            over.join(", ")
        )?;
    }
    writeln!(t, "Claims rejected, by reason:")?;
    let reasons: std::collections::BTreeSet<i32> = reports
        .iter()
        .flat_map(|r| r.rejected.iter().map(|c| c.reason))
        .collect();
    for reason in reasons {
        let sum = Sum::of(reports.iter().map(|r| {
            r.rejected
                .iter()
                .find(|c| c.reason == reason)
                .and_then(|c| c.cell.as_ref())
        }));
        writeln!(
            t,
            "  {:<24} {}{}",
            reason_name(reason),
            sum.count(),
            sum.note()
        )?;
    }
    if reports.iter().all(|r| r.rejected.is_empty()) {
        writeln!(t, "  (none)")?;
    }
    writeln!(
        t,
        "What each city's vouchers cost in each city ({period}), largest first:"
    )?;
    write_flows(t, &flows_of(reports), true)?;
    if !missing.is_empty() {
        writeln!(t, "Not answered in time: {}", missing.join(", "))?;
    }
    Ok(())
}

/// Every published cell of every report, one row each (the full city-to-city matrix among
/// them), through the `csv` crate for quoting; suppressed cells say so in the amount column.
fn csv(reports: &[NodeReport]) -> String {
    let mut rows = csv::Writer::from_writer(Vec::new());
    let mut write = |row: [&str; 7]| {
        // Writing to memory cannot fail.
        let _ = rows.write_record(row);
    };
    write([
        "node",
        "period",
        "measure",
        "dimension",
        "count",
        "vouchers",
        "amount_eur",
    ]);
    let mut row =
        |r: &NodeReport, measure: &str, dim: &str, cell: Option<&ReportCell>| match shown(cell) {
            Some(c) => {
                let (count, vouchers) = (c.count.to_string(), c.vouchers.to_string());
                let euros = format!(
                    "{}{}.{:02}",
                    if c.amount_cents < 0 { "-" } else { "" },
                    (c.amount_cents / 100).abs(),
                    (c.amount_cents % 100).abs()
                );
                write([&r.node, &r.period, measure, dim, &count, &vouchers, &euros]);
            }
            None => write([&r.node, &r.period, measure, dim, "", "", "suppressed"]),
        };
    for r in reports {
        row(r, "issued", "", r.issued.as_ref());
        row(r, "settled", "", r.settled.as_ref());
        for c in &r.categories {
            row(r, "category", &c.category, c.cell.as_ref());
        }
        for f in &r.flows {
            row(r, "flow", &f.redeemer, f.cell.as_ref());
        }
        for c in &r.rejected {
            row(r, "rejected", reason_name(c.reason), c.cell.as_ref());
        }
    }
    let bytes = rows.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Bars of spend per quarter against a line for a quarter's share of the budget, per city.
fn chart(reports: &[NodeReport]) -> String {
    let width = 180 * reports.len().max(1) + 60;
    let height = 300;
    let max = reports
        .iter()
        .flat_map(|r| {
            r.quarters
                .iter()
                .filter_map(|q| shown(q.cell.as_ref()).map(|c| c.amount_cents))
                .chain(std::iter::once(r.annual_budget_cents / 4))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let scale = |cents: i64| (cents as f64 / max as f64 * 200.0).round() as i64;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<text x="10" y="16" font-size="13">Spend per quarter against a quarter of the annual budget (dashed)</text>
"##
    );
    for (i, r) in reports.iter().enumerate() {
        let x0 = 40 + i * 180;
        let budget_y = 250 - scale(r.annual_budget_cents / 4);
        svg.push_str(&format!(
            r##"<line x1="{x0}" y1="{budget_y}" x2="{}" y2="{budget_y}" stroke="#c0392b" stroke-dasharray="4 3"/>
<text x="{x0}" y="275">{}</text>
"##,
            x0 + 150,
            r.node_name
        ));
        for (j, q) in r.quarters.iter().enumerate() {
            let x = x0 + j * 36;
            match shown(q.cell.as_ref()) {
                Some(c) => {
                    let h = scale(c.amount_cents);
                    svg.push_str(&format!(
                        r##"<rect x="{x}" y="{}" width="28" height="{h}" fill="#2e86c1"><title>{} {}</title></rect>
"##,
                        250 - h,
                        q.period,
                        Cents(c.amount_cents)
                    ));
                }
                None => svg.push_str(&format!(
                    r##"<text x="{x}" y="245">–</text>
"##
                )),
            }
            svg.push_str(&format!(
                r##"<text x="{x}" y="262">Q{}</text>
"##,
                j + 1
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

pub(crate) async fn clearing(
    client: &Client,
    command: ClearingCommand,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let mut office = client.office();
    let result = match command {
        ClearingCommand::Close { period } => {
            office.close_clearing(ClearingRequest { period }).await
        }
        ClearingCommand::Show { period } => office.show_clearing(ClearingRequest { period }).await,
    }
    .map_err(|s| client.explain(&s))?
    .into_inner();
    print_clearing(&result, out);
    Ok(Outcome::Done)
}

fn clearing_state_name(state: ClearingState) -> &'static str {
    match state {
        ClearingState::Unspecified | ClearingState::Open => "open",
        ClearingState::Closing => "closing",
        ClearingState::Closed => "closed",
        ClearingState::AwaitingSecondOffice => "awaiting a second office identity",
    }
}

pub(crate) fn print_clearing(result: &ClearingResult, out: &Output) {
    let deadline = result.deadline.map(|d| Day::from(d).to_string());
    if out.json {
        let pairs: Vec<_> = result.pairs.iter().map(|p| json!({
            "peer": p.peer, "closed": p.closed, "closed_by": p.closed_by,
            "reached": p.reached, "agreed": p.agreed,
            "liabilities_cents": p.liabilities_cents, "peer_receivables_cents": p.peer_receivables_cents,
            "receivables_cents": p.receivables_cents, "peer_liabilities_cents": p.peer_liabilities_cents,
            "differing_claim_ids": p.differing_claim_ids, "note": p.note,
        })).collect();
        outln!(
            "{}",
            json!({
                "node": result.node, "period": result.period,
                "state": clearing_state_name(result.state()), "closed": result.closed,
                "early": result.early, "deadline": deadline, "message": result.message,
                "pairs": pairs, "net_position_cents": result.net_position_cents,
            })
        );
        return;
    }
    outln!(
        "Clearing of {} at {}: {}{}",
        result.period,
        result.node,
        clearing_state_name(result.state()),
        if result.early { " (closed early)" } else { "" }
    );
    if let Some(deadline) = deadline {
        outln!("  claim deadline: {deadline}");
    }
    if !result.message.is_empty() {
        outln!("  {}", result.message);
    }
    for p in &result.pairs {
        let state = match (p.closed, p.reached, p.agreed) {
            (false, _, _) if p.note.is_empty() => "open".to_owned(),
            (false, _, _) => format!("NOT CLOSED: {}", p.note),
            (true, false, _) => {
                format!("closed by {}; not reconciled here: {}", p.closed_by, p.note)
            }
            (true, true, true) => "closed, books agree".to_owned(),
            (true, true, false) => format!(
                "closed, books DIFFER in {}",
                p.differing_claim_ids.join(", ")
            ),
        };
        if p.reached {
            outln!(
                "  with {:<10} owes {} (they say {}), is owed {} (they say {}): {state}",
                p.peer,
                Cents(p.liabilities_cents),
                Cents(p.peer_receivables_cents),
                Cents(p.receivables_cents),
                Cents(p.peer_liabilities_cents),
            );
        } else {
            outln!("  with {:<10} {state}", p.peer);
        }
    }
    if result.pairs.iter().any(|p| p.reached) {
        outln!(
            "  net position (reconciled pairs): {}",
            Cents(result.net_position_cents)
        );
    }
}

#[cfg(test)]
mod tests {
    use schein_proto::v1::{ReasonCell, RejectReason};

    use super::*;

    fn report() -> NodeReport {
        let shown = |count| ReportCell {
            suppressed: false,
            vouchers: count,
            count,
            amount_cents: 0,
        };
        NodeReport {
            node: "leipzig".into(),
            node_name: "Leipzig".into(),
            period: "2026-Q1".into(),
            settled: Some(ReportCell {
                suppressed: true,
                ..Default::default()
            }),
            rejected: vec![
                ReasonCell {
                    reason: RejectReason::OverCap as i32,
                    cell: Some(shown(7)),
                },
                ReasonCell {
                    reason: RejectReason::UnknownVoucher as i32,
                    cell: Some(shown(0)),
                },
            ],
            forecast_cents: None,
            released_through: Some(Day::parse("2026-03-01").unwrap().into()),
            ..Default::default()
        }
    }

    #[test]
    fn reasons_are_padded_outside_their_parentheses() {
        let text = table(&[report()], &[]);
        assert!(
            text.contains("  claims rejected (over_cap)        7\n"),
            "{text}"
        );
        assert!(
            text.contains("  claims rejected (unknown_voucher) 0\n"),
            "{text}"
        );
        assert!(!text.contains(" )"), "{text}");
    }

    /// Fifty nodes, each with a flow to every city, some cells suppressed.
    fn fifty() -> Vec<NodeReport> {
        let cell = |vouchers: u64, cents: i64| ReportCell {
            suppressed: vouchers < 5,
            vouchers,
            count: vouchers,
            amount_cents: cents,
        };
        let ids: Vec<String> = (1..=50).map(|i| format!("city{i:02}")).collect();
        ids.iter()
            .enumerate()
            .map(|(i, id)| NodeReport {
                node: id.clone(),
                node_name: id.clone(),
                period: "2026-Q4".into(),
                issued: Some(cell(40 + i as u64, 0)),
                claimed_vouchers: Some(cell(20, 0)),
                settled: Some(cell(if i % 7 == 0 { 3 } else { 30 }, 100_000 + i as i64)),
                spent_this_year: Some(cell(30, 400_000)),
                forecast_cents: Some(450_000),
                flows: ids
                    .iter()
                    .enumerate()
                    .map(|(j, redeemer)| schein_proto::v1::FlowCell {
                        redeemer: redeemer.clone(),
                        cell: Some(cell((i + j) as u64 % 9, 1_000 * (i * 50 + j) as i64)),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn fifty_cities_fit_a_terminal() {
        let text = table(&fifty(), &["city51".to_owned()]);
        let lines: Vec<&str> = text.lines().collect();
        let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 100, "{widest} characters wide:\n{text}");
        assert!(lines.len() <= 90, "{} lines:\n{text}", lines.len());
        assert!(text.contains("50 of 51 nodes answered"), "{text}");
        assert!(text.contains("Not answered in time: city51"), "{text}");
        // The largest published flow is listed first, and the rest are counted, not dropped.
        let largest = lines
            .iter()
            .position(|l| l.contains("city50 → city50"))
            .unwrap_or(usize::MAX);
        let heading = lines
            .iter()
            .position(|l| l.contains("largest first"))
            .unwrap();
        assert_eq!(largest, heading + 1, "{text}");
        assert!(text.contains("more published"), "{text}");
    }

    #[test]
    fn totals_are_exact_when_every_part_is_published_and_bounded_otherwise() {
        let mut reports = fifty();
        let text = table(&reports, &[]);
        assert!(
            text.contains("claims settled ≥ "),
            "city01 is suppressed: {text}"
        );
        assert!(text.contains("(+8 suppressed)"), "{text}");
        for r in &mut reports {
            if let Some(cell) = r.settled.as_mut() {
                cell.suppressed = false;
            }
        }
        let text = table(&reports, &[]);
        let exact: i64 = reports
            .iter()
            .map(|r| r.settled.as_ref().unwrap().amount_cents)
            .sum();
        assert!(
            text.contains(&format!(
                "claims settled {}, {}",
                reports
                    .iter()
                    .map(|r| r.settled.as_ref().unwrap().count)
                    .sum::<u64>(),
                Cents(exact)
            )),
            "{text}"
        );
    }

    #[test]
    fn a_suppressed_forecast_says_so() {
        let text = table(&[report()], &[]);
        assert!(text.contains("forecast (suppressed)"), "{text}");
        assert!(
            text.contains("figures up to the end of 2026-03-01"),
            "{text}"
        );
        let json = report_json(&report());
        assert_eq!(json["forecast_cents"], "suppressed");
        let mut shown = report();
        shown.forecast_cents = Some(12_345);
        assert!(table(&[shown], &[]).contains("forecast EUR 123.45"));
    }
}
