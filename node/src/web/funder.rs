//! The funder's dashboard: the node's report for a period as tables (suppressed cells marked,
//! never filled in), the year's spend by quarter against the budget as a chart, where this
//! node's vouchers were redeemed, and the report as CSV. The figures are the domain core's
//! ([`report::for_reader`]): funders see them as released weekly, the node's office live.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use schein_proto::Day;
use schein_proto::v1::{NodeReport, RejectReason, ReportCell};

use super::page::{self, Lang, PeriodQuery, Who};
use super::{Console, Signed};
use crate::domain::access::Operation;
use crate::domain::report;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/funder", get(dashboard))
        .route("/funder/report.csv", get(csv))
        .route("/funder/federation", get(federation))
}

fn read(console: &Console, signed: &Signed, period: &str) -> Result<NodeReport, Response> {
    let reader = signed.may(console, Operation::Report)?;
    report::for_reader(&console.node, &reader, period).map_err(|error| {
        let status = tonic::Status::from(error);
        page::message(
            signed.lang,
            StatusCode::BAD_REQUEST,
            signed
                .lang
                .t("Bericht nicht verfügbar", "Report not available"),
            status.message(),
        )
    })
}

fn cell(cell: Option<&ReportCell>) -> Markup {
    match cell {
        Some(c) if !c.suppressed => html! { (page::money(c.amount_cents)) },
        Some(_) => suppressed(),
        None => html! { "—" },
    }
}

/// A suppressed cell: a dot for the eye, words for a screen reader.
fn suppressed() -> Markup {
    html! {
        span.suppressed aria-hidden="true" title="verborgen / hidden" { "•" }
        span.sr-only { "verborgen (hidden)" }
    }
}

fn count(cell: Option<&ReportCell>) -> Markup {
    match cell {
        Some(c) if !c.suppressed => html! { (c.count) },
        Some(_) => suppressed(),
        None => html! { "—" },
    }
}

fn reason_word(lang: Lang, reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Unspecified => "?",
        RejectReason::UnknownVoucher => lang.t("unbekannter Gutschein", "unknown voucher"),
        RejectReason::Revoked => lang.t("gesperrt", "revoked"),
        RejectReason::Expired => lang.t("abgelaufen", "expired"),
        RejectReason::DeadlinePassed => lang.t("Frist versäumt", "deadline passed"),
        RejectReason::OverCap => lang.t("über der Obergrenze", "over the cap"),
        RejectReason::Duplicate => lang.t("doppelt", "duplicate"),
        RejectReason::PeriodClosed => lang.t("Zeitraum abgeschlossen", "period closed"),
        RejectReason::OutOfScope => lang.t("nicht abgedeckt", "not covered"),
        RejectReason::OverMedicationCeiling => {
            lang.t("über der Arzneimittelgrenze", "over the medication ceiling")
        }
        RejectReason::OverClaimCeiling => {
            lang.t("über der Grenze je Abrechnung", "over the claim ceiling")
        }
        RejectReason::NotBoundProvider => {
            lang.t("nicht der gebundene Anbieter", "not the bound provider")
        }
    }
}

fn category_word(lang: Lang, category: &str) -> &str {
    match category {
        "treatment" => lang.t("Behandlung", "treatment"),
        "medication" => lang.t("Arzneimittel", "medication"),
        "emergency" => lang.t("Notfall", "emergency"),
        other => other,
    }
}

async fn dashboard(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let period = query.or_current();
    let report = match read(&console, &signed, &period) {
        Ok(report) => report,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let body = html! {
        (page::period_form(lang, "/funder", &period))
        p { a.button href={ "/funder/report.csv?period=" (period) } download { (lang.t("CSV herunterladen", "Download CSV")) } }
        p.hint {
            @match report.released_through {
                Some(day) => { (lang.t("Stand: Ende ", "Figures up to the end of ")) (page::date(Day::from(day))) (lang.t(" (wöchentlich veröffentlicht).", " (released weekly).")) }
                None => { (lang.t("Stand: jetzt (nur für die eigene Clearingstelle).", "Figures: live (only the node's own office sees these).")) }
            }
            " " span.suppressed { "•" } " " (lang.t("= verborgen, weil aus weniger als 5 Gutscheinen (oder daraus errechenbar).", "= hidden: built from fewer than 5 vouchers (or computable from such cells)."))
        }
        h2 { (lang.t("Ausgaben im Jahr gegen das Budget", "Spend in the year against the budget")) }
        (chart(lang, &report))
        h2 { (lang.t("Überblick", "Overview")) }
        table.list {
            thead { tr { th scope="col" { (lang.t("Kennzahl", "Measure")) } th.num scope="col" { (lang.t("Anzahl", "Count")) } th.num scope="col" { (lang.t("Betrag", "Amount")) } } }
            tbody {
                tr { th scope="row" { (lang.t("Ausgestellte Gutscheine", "Vouchers issued")) } td.num { (count(report.issued.as_ref())) } td {} }
                tr { th scope="row" { (lang.t("Gutscheine mit Abrechnung", "Vouchers claimed on")) } td.num { (count(report.claimed_vouchers.as_ref())) } td {} }
                tr { th scope="row" { (lang.t("Bezahlte Abrechnungen", "Settled claims")) } td.num { (count(report.settled.as_ref())) } td.num { (cell(report.settled.as_ref())) } }
                @for c in &report.categories {
                    tr { th.sub scope="row" { (category_word(lang, &c.category)) } td.num { (count(c.cell.as_ref())) } td.num { (cell(c.cell.as_ref())) } }
                }
                tr { th scope="row" { (lang.t("Jahresbudget", "Annual budget")) } td {} td.num { (page::money(report.annual_budget_cents)) } }
                tr { th scope="row" { (lang.t("Ausgegeben im Jahr", "Spent this year")) } td {} td.num { (cell(report.spent_this_year.as_ref())) } }
                tr { th scope="row" { (lang.t("Prognose für das Jahr", "Forecast for the year")) } td {} td.num {
                    @match report.forecast_cents { Some(f) => { (page::money(f)) @if report.forecast_exceeds_budget { " " span.badge.bad { (lang.t("über Budget", "over budget")) } } } None => (suppressed()) }
                } }
            }
        }
        h2 { (lang.t("Abgelehnte Abrechnungen nach Grund", "Rejected claims by reason")) }
        table.list {
            thead { tr { th scope="col" { (lang.t("Grund", "Reason")) } th.num scope="col" { (lang.t("Anzahl", "Count")) } } }
            tbody { @for r in &report.rejected { tr { th scope="row" { (reason_word(lang, r.reason())) } td.num { (count(r.cell.as_ref())) } } } }
        }
        h2 { (lang.t("Wo die Gutscheine eingelöst wurden", "Where the vouchers were redeemed")) }
        table.list {
            thead { tr { th scope="col" { (lang.t("Ausgestellt von", "Issued by")) } @for f in &report.flows { th.num scope="col" { (f.redeemer) } } } }
            tbody { tr { th scope="row" { (report.node_name) } @for f in &report.flows { td.num { (cell(f.cell.as_ref())) } } } }
        }
    };
    let who = Who {
        role: signed.identity.role,
        name: &signed.identity.name,
        node_name: &console.node.name,
    };
    let title = format!(
        "{} – {} {}",
        lang.t("Bericht", "Report"),
        report.node_name,
        report.period
    );
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(lang, &title, Some(who), "/funder", body),
    )
}

/// The year's spend by quarter against the budget: bars for what each quarter added (stacked
/// up to the year so far), a line for the annual budget, and the forecast for the year.
fn chart(lang: Lang, report: &NodeReport) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 90.0;
    const BOTTOM: f64 = 40.0;
    const TOP: f64 = 20.0;
    let budget = report.annual_budget_cents.max(1) as f64;
    let mut cumulative = 0i64;
    let bars: Vec<(String, Option<i64>)> = report
        .quarters
        .iter()
        .map(|q| match q.cell.as_ref().filter(|c| !c.suppressed) {
            Some(c) => {
                cumulative += c.amount_cents;
                (q.period.clone(), Some(cumulative))
            }
            None => (q.period.clone(), None),
        })
        .collect();
    let top_value = [
        budget,
        report.forecast_cents.unwrap_or(0) as f64,
        cumulative as f64,
    ]
    .into_iter()
    .fold(0.0, f64::max)
        * 1.1;
    let y = |cents: f64| TOP + (H - TOP - BOTTOM) * (1.0 - cents / top_value);
    let slot = (W - LEFT - 20.0) / bars.len().max(1) as f64;
    let ticks = 4;
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby="chart-title chart-desc" width="100%" {
                title #chart-title { (lang.t("Ausgaben je Quartal, aufsummiert, gegen das Jahresbudget", "Spend by quarter, cumulative, against the annual budget")) }
                desc #chart-desc { (lang.t("Balken: bis zum Ende des Quartals ausgegeben. Linie: Jahresbudget. Gestrichelt: Prognose.", "Bars: spent up to the end of the quarter. Line: annual budget. Dashed: forecast.")) }
                line x1=(LEFT) y1=(y(0.0)) x2=(W - 10.0) y2=(y(0.0)) stroke="#333" {}
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y(0.0)) stroke="#333" {}
                @for i in 0..=ticks {
                    @let value = top_value * f64::from(i) / f64::from(ticks);
                    line x1=(LEFT - 5.0) y1=(y(value)) x2=(LEFT) y2=(y(value)) stroke="#333" {}
                    text x=(LEFT - 8.0) y=(y(value) + 4.0) text-anchor="end" font-size="11" fill="#222" { (page::money(value as i64 / 100 * 100)) }
                }
                @for (i, (label, value)) in bars.iter().enumerate() {
                    @let x = LEFT + slot * i as f64 + slot * 0.2;
                    @match value {
                        Some(v) => {
                            rect x=(x) y=(y(*v as f64)) width=(slot * 0.6) height=(y(0.0) - y(*v as f64)) fill="#1f5f99" {}
                            text x=(x + slot * 0.3) y=(y(*v as f64) - 5.0) text-anchor="middle" font-size="11" fill="#222" { (page::money(*v)) }
                        }
                        None => {
                            text x=(x + slot * 0.3) y=(y(0.0) - 8.0) text-anchor="middle" font-size="11" fill="#222" { "• " (lang.t("verborgen", "hidden")) }
                        }
                    }
                    text x=(x + slot * 0.3) y=(H - BOTTOM + 18.0) text-anchor="middle" font-size="12" fill="#222" { (label) }
                }
                line x1=(LEFT) y1=(y(budget)) x2=(W - 10.0) y2=(y(budget)) stroke="#b3261e" stroke-width="2" {}
                text x=(W - 12.0) y=(y(budget) - 6.0) text-anchor="end" font-size="12" fill="#b3261e" { (lang.t("Budget ", "Budget ")) (page::money(report.annual_budget_cents)) }
                @if let Some(forecast) = report.forecast_cents {
                    line x1=(LEFT) y1=(y(forecast as f64)) x2=(W - 10.0) y2=(y(forecast as f64)) stroke="#6b4e00" stroke-width="2" stroke-dasharray="6 4" {}
                    text x=(LEFT + 6.0) y=(y(forecast as f64) - 6.0) font-size="12" fill="#6b4e00" { (lang.t("Prognose ", "Forecast ")) (page::money(forecast)) }
                }
            }
            figcaption { (lang.t("Ausgaben bis zum Ende jedes Quartals; rote Linie: Jahresbudget; gestrichelt: Prognose für das Jahr.", "Spend up to the end of each quarter; red line: annual budget; dashed: forecast for the year.")) }
        }
    }
}

/// Euros with a decimal point, from cents, without floating point: 1234.56
fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// The report's rows for the CSV: each measure and its cell.
fn csv_rows(report: &NodeReport) -> Vec<(String, Option<&ReportCell>)> {
    let mut rows = vec![
        ("issued".to_owned(), report.issued.as_ref()),
        (
            "claimed_vouchers".to_owned(),
            report.claimed_vouchers.as_ref(),
        ),
        ("settled".to_owned(), report.settled.as_ref()),
    ];
    rows.extend(
        report
            .categories
            .iter()
            .map(|c| (format!("settled_{}", c.category), c.cell.as_ref())),
    );
    rows.extend(report.rejected.iter().map(|r| {
        let reason = r
            .reason()
            .as_str_name()
            .trim_start_matches("REJECT_REASON_")
            .to_lowercase();
        (format!("rejected_{reason}"), r.cell.as_ref())
    }));
    rows.extend(
        report
            .flows
            .iter()
            .map(|f| (format!("redeemed_in_{}", f.redeemer), f.cell.as_ref())),
    );
    rows.extend(
        report
            .quarters
            .iter()
            .map(|q| (format!("spent_{}", q.period), q.cell.as_ref())),
    );
    rows.push((
        "spent_this_year".to_owned(),
        report.spent_this_year.as_ref(),
    ));
    rows
}

/// The report as CSV: one line per measure, suppressed cells marked and left empty.
fn report_csv(report: &NodeReport) -> Result<String, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "node",
        "period",
        "measure",
        "count",
        "vouchers",
        "amount_eur",
        "suppressed",
    ])?;
    let (node, period) = (report.node.as_str(), report.period.as_str());
    for (measure, cell) in csv_rows(report) {
        match cell {
            Some(c) if !c.suppressed => out.write_record([
                node,
                period,
                &measure,
                &c.count.to_string(),
                &c.vouchers.to_string(),
                &euros(c.amount_cents),
                "no",
            ])?,
            Some(_) => out.write_record([node, period, &measure, "", "", "", "yes"])?,
            None => {}
        }
    }
    out.write_record([
        node,
        period,
        "annual_budget",
        "",
        "",
        &euros(report.annual_budget_cents),
        "no",
    ])?;
    if let Some(forecast) = report.forecast_cents {
        out.write_record([node, period, "forecast", "", "", &euros(forecast), "no"])?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn csv(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let period = query.or_current();
    let report = match read(&console, &signed, &period) {
        Ok(report) => report,
        Err(page) => return page,
    };
    let out = match report_csv(&report) {
        Ok(out) => out,
        Err(error) => {
            tracing::error!(%error, "writing a report as CSV failed");
            return page::message(
                signed.lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                signed.lang.t("Fehler", "Error"),
                signed.lang.t(
                    "Die CSV-Datei konnte nicht erstellt werden.",
                    "The CSV file could not be made.",
                ),
            );
        }
    };
    let file = format!(
        "attachment; filename=\"schein-{}-{}.csv\"",
        report.node, report.period
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, file),
        ],
        out,
    )
        .into_response()
}

/// The federation at a glance: every member node's report for the period, side by side, and the
/// city-to-city matrix (who paid for vouchers redeemed where). Nodes that do not answer in time
/// are named; their row is missing, never guessed.
async fn federation(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let reader = match signed.may(&console, Operation::Report) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let period = query.or_current();
    let (reports, unanswered) = match report::federation(&console.node, &reader, &period).await {
        Ok(found) => found,
        Err(error) => {
            let status = tonic::Status::from(error);
            return page::message(
                lang,
                StatusCode::BAD_REQUEST,
                lang.t("Bericht nicht verfügbar", "Report not available"),
                status.message(),
            );
        }
    };
    let asked = reports.len() + unanswered.len();
    let mut redeemers: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.flows.iter().map(|f| f.redeemer.as_str()))
        .collect();
    redeemers.sort_unstable();
    redeemers.dedup();
    let body = html! {
        (page::period_form(lang, "/funder/federation", &period))
        div.answer.(if unanswered.is_empty() { "good" } else { "warn" }) role="status" {
            p { (reports.len()) (lang.t(" von ", " of ")) (asked) (lang.t(" Knoten haben geantwortet.", " nodes answered.")) }
            @if !unanswered.is_empty() {
                p { (lang.t("Nicht erreichbar: ", "Not reachable: ")) (unanswered.join(", ")) (lang.t(" – ihre Zeilen fehlen.", " – their rows are missing.")) }
            }
        }
        table.list {
            caption { (lang.t("Je Knoten", "Per node")) }
            thead { tr {
                th scope="col" { (lang.t("Knoten", "Node")) }
                th.num scope="col" { (lang.t("Ausgestellt", "Issued")) }
                th.num scope="col" { (lang.t("Bezahlte Abrechnungen", "Settled claims")) }
                th.num scope="col" { (lang.t("Betrag", "Amount")) }
                th.num scope="col" { (lang.t("Im Jahr ausgegeben", "Spent this year")) }
                th.num scope="col" { (lang.t("Jahresbudget", "Annual budget")) }
                th.num scope="col" { (lang.t("Prognose", "Forecast")) }
            } }
            tbody {
                @for r in &reports {
                    tr {
                        th scope="row" { (member_name(&console, &r.node)) }
                        td.num { (count(r.issued.as_ref())) }
                        td.num { (count(r.settled.as_ref())) }
                        td.num { (cell(r.settled.as_ref())) }
                        td.num { (cell(r.spent_this_year.as_ref())) }
                        td.num { (page::money(r.annual_budget_cents)) }
                        td.num { @match r.forecast_cents { Some(f) => { (page::money(f)) @if r.forecast_exceeds_budget { " " span.badge.bad { (lang.t("über Budget", "over budget")) } } } None => (suppressed()) } }
                    }
                }
            }
        }
        table.list {
            caption { (lang.t("Von Stadt zu Stadt: ausgestellt von (Zeile), eingelöst in (Spalte)", "City to city: issued by (row), redeemed in (column)")) }
            thead { tr { th scope="col" { (lang.t("Ausgestellt von", "Issued by")) } @for r in &redeemers { th.num scope="col" { (r) } } } }
            tbody {
                @for report in &reports {
                    tr {
                        th scope="row" { (member_name(&console, &report.node)) }
                        @for redeemer in &redeemers {
                            td.num { (cell(report.flows.iter().find(|f| f.redeemer == *redeemer).and_then(|f| f.cell.as_ref()))) }
                        }
                    }
                }
            }
        }
        p.hint { span.suppressed { "•" } " " (lang.t("= verborgen, weil aus weniger als 5 Gutscheinen (oder daraus errechenbar).", "= hidden: built from fewer than 5 vouchers (or computable from such cells).")) }
    };
    let who = Who {
        role: signed.identity.role,
        name: &signed.identity.name,
        node_name: &console.node.name,
    };
    let title = format!("{} – {}", lang.t("Verbund", "Federation"), period);
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(lang, &title, Some(who), "/funder/federation", body),
    )
}

/// A member's name as this node's roster has it (not as the member calls itself in its report).
fn member_name(console: &Console, id: &str) -> String {
    console
        .node
        .roster()
        .member(id)
        .map(|m| m.name().to_owned())
        .unwrap_or_else(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use schein_proto::v1::{FlowCell, NodeReport, ReportCell};

    use super::*;

    #[test]
    fn the_csv_gives_euros_exactly_and_marks_suppressed_cells() {
        let shown = ReportCell {
            suppressed: false,
            vouchers: 7,
            count: 12,
            amount_cents: 123_456_789,
        };
        let report = NodeReport {
            node: "leipzig".into(),
            period: "2026-Q4".into(),
            settled: Some(shown),
            issued: Some(ReportCell {
                suppressed: true,
                ..Default::default()
            }),
            flows: vec![FlowCell {
                redeemer: "dresden".into(),
                cell: Some(ReportCell {
                    amount_cents: 5,
                    ..shown
                }),
            }],
            annual_budget_cents: 20_400_000,
            forecast_cents: Some(-250),
            ..Default::default()
        };
        let csv = report_csv(&report).expect("csv");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "node,period,measure,count,vouchers,amount_eur,suppressed"
        );
        assert!(lines.contains(&"leipzig,2026-Q4,issued,,,,yes"), "{csv}");
        assert!(
            lines.contains(&"leipzig,2026-Q4,settled,12,7,1234567.89,no"),
            "{csv}"
        );
        assert!(
            lines.contains(&"leipzig,2026-Q4,redeemed_in_dresden,12,7,0.05,no"),
            "{csv}"
        );
        assert!(
            lines.contains(&"leipzig,2026-Q4,annual_budget,,,204000.00,no"),
            "{csv}"
        );
        assert!(
            lines.contains(&"leipzig,2026-Q4,forecast,,,-2.50,no"),
            "{csv}"
        );
    }
}
