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
    eprintln!("asking {} nodes for {period} …", members.len());
    let asks = members.into_iter().map(|member| {
        let identity = IdentityFile {
            node: member.id.clone(),
            node_name: member.name.clone(),
            endpoint: member.endpoint.clone(),
            node_ca: member.ca_cert_pem.clone(),
            ..client.identity.clone()
        };
        async move {
            let answer = async {
                let other = Client::from_identity(identity, None).await?;
                fetch(&other, period).await
            }
            .await;
            match &answer {
                Ok(_) => eprintln!("  {:<10} answered", member.id),
                Err(error) => eprintln!("  {:<10} did not answer: {error:#}", member.id),
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

/// The reports as text: each node's figures, then the flow matrix.
fn table(reports: &[NodeReport], missing: &[String]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_table(&mut text, reports, missing);
    text
}

fn write_table(
    t: &mut impl std::fmt::Write,
    reports: &[NodeReport],
    missing: &[String],
) -> std::fmt::Result {
    for r in reports {
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
            let reason = schein_proto::v1::RejectReason::try_from(c.reason)
                .ok()
                .and_then(reject_reason_code)
                .unwrap_or("other");
            writeln!(
                t,
                "  claims rejected {:<17} {}",
                format!("({reason})"),
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
        writeln!(t)?;
    }
    // The flow matrix: rows are issuers, columns the cities where their vouchers were used.
    let columns: Vec<&str> = reports
        .first()
        .map(|r| r.flows.iter().map(|f| f.redeemer.as_str()).collect())
        .unwrap_or_default();
    writeln!(
        t,
        "What each city's vouchers cost in each city ({}):",
        reports.first().map_or("", |r| r.period.as_str())
    )?;
    write!(t, "  {:<12}", "issuer")?;
    for c in &columns {
        write!(t, "{c:>16}")?;
    }
    writeln!(t, "{:>16}", "total")?;
    for r in reports {
        write!(t, "  {:<12}", r.node)?;
        for c in &columns {
            let cell = r
                .flows
                .iter()
                .find(|f| f.redeemer == *c)
                .and_then(|f| f.cell.as_ref());
            write!(t, "{:>16}", short_amount(cell))?;
        }
        writeln!(t, "{:>16}", short_amount(r.settled.as_ref()))?;
    }
    write!(t, "  {:<12}", "total")?;
    for c in &columns {
        let cells: Vec<Option<&ReportCell>> = reports
            .iter()
            .map(|r| {
                r.flows
                    .iter()
                    .find(|f| f.redeemer == *c)
                    .and_then(|f| f.cell.as_ref())
            })
            .collect();
        // A column total only if every part of it was published.
        let total = cells
            .iter()
            .map(|c| shown(*c).map(|c| c.amount_cents))
            .sum::<Option<i64>>();
        write!(
            t,
            "{:>16}",
            total.map_or("–".into(), |sum| Cents(sum).to_string())
        )?;
    }
    writeln!(t)?;
    if !missing.is_empty() {
        writeln!(t, "\nNot answered: {}", missing.join(", "))?;
    }
    Ok(())
}

fn short_amount(cell: Option<&ReportCell>) -> String {
    shown(cell).map_or_else(|| "–".into(), |c| Cents(c.amount_cents).to_string())
}

fn csv(reports: &[NodeReport]) -> String {
    let mut text = String::from("node,period,measure,dimension,count,vouchers,amount_eur\n");
    let mut row = |node: &str,
                   period: &str,
                   measure: &str,
                   dim: &str,
                   cell: Option<&ReportCell>| {
        match shown(cell) {
            Some(c) => text.push_str(&format!(
                "{node},{period},{measure},{dim},{},{},{}.{:02}\n",
                c.count,
                c.vouchers,
                c.amount_cents / 100,
                (c.amount_cents % 100).abs()
            )),
            None => text.push_str(&format!("{node},{period},{measure},{dim},,,suppressed\n")),
        }
    };
    for r in reports {
        row(&r.node, &r.period, "issued", "", r.issued.as_ref());
        row(&r.node, &r.period, "settled", "", r.settled.as_ref());
        for c in &r.categories {
            row(&r.node, &r.period, "category", &c.category, c.cell.as_ref());
        }
        for f in &r.flows {
            row(&r.node, &r.period, "flow", &f.redeemer, f.cell.as_ref());
        }
        for c in &r.rejected {
            let reason = schein_proto::v1::RejectReason::try_from(c.reason)
                .ok()
                .and_then(reject_reason_code)
                .unwrap_or("other");
            row(&r.node, &r.period, "rejected", reason, c.cell.as_ref());
        }
    }
    text
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
