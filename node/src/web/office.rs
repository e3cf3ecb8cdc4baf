//! The clearing office's pages: issue a voucher and print its card, find and revoke vouchers,
//! raise a cap (with the second identity above the threshold), decide held claims, clear a
//! period with the other cities, check ledgers, and see how the node is doing. Every decision
//! is the domain core's ([`vouchers`], [`claim`], [`clearing`], [`witness`]).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use schein_proto::Day;
use schein_proto::v1::{
    IssueVoucherRequest, ListClaimsRequest, ListVouchersRequest, RevocationReason, Scope,
    VoucherRecord, VoucherState,
};

use super::card::{Card, card};
use super::page::{self, Lang, PeriodQuery, Who};
use super::practice::{covers, scope_word};
use super::{Console, Signed};
use crate::domain::access::Operation;
use crate::domain::{claim, clearing, vouchers, witness};
use crate::pki::Role;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/office", get(issue_page))
        .route("/office/issue", post(issue))
        .route("/office/voucher", get(voucher_page).post(find_voucher))
        .route("/office/revoke", post(revoke))
        .route("/office/approve", post(approve))
        .route("/office/vouchers", get(list_page))
        .route("/office/held", get(held_page).post(decide_held))
        .route("/office/caps", get(caps_page))
        .route("/office/clearing", get(clearing_page).post(close_period))
        .route("/office/status", get(status_page).post(check_ledgers))
}

fn who<'a>(signed: &'a Signed, console: &'a Console) -> Who<'a> {
    Who {
        role: signed.identity.role,
        name: &signed.identity.name,
        node_name: &console.node.name,
    }
}

fn show(
    lang: Lang,
    signed: &Signed,
    console: &Console,
    title: &str,
    current: &str,
    body: Markup,
) -> Response {
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(lang, title, Some(who(signed, console)), current, body),
    )
}

/// A refusal of the core as a box on the page (its sentence is the node's, in English).
fn refusal(lang: Lang, status: &tonic::Status) -> Markup {
    html! {
        div.answer.bad role="alert" {
            p { strong { (lang.t("Nicht ausgeführt:", "Not done:")) } }
            p.detail lang="en" { (status.message()) }
        }
    }
}

const EXTRA_SCOPES: [(Scope, &str); 4] = [
    (Scope::Medication, "medication"),
    (Scope::PregnancyCare, "pregnancy-care"),
    (Scope::SpecialistReferral, "specialist-referral"),
    (Scope::Dental, "dental"),
];

fn providers(console: &Console) -> Vec<String> {
    let today = Day::today().to_string();
    crate::enrolled::load(&console.node.base_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.role == Role::Provider && e.valid_until >= today)
        .map(|e| format!("{}/{}", console.node.id, e.name))
        .collect()
}

async fn issue_page(State(console): State<Console>, signed: Signed) -> Response {
    if let Err(page) = signed.may(&console, Operation::IssueVoucher) {
        return page;
    }
    let lang = signed.lang;
    let body = issue_form(lang, &console, &signed, None, None, &[]);
    show(
        lang,
        &signed,
        &console,
        lang.t("Gutschein ausstellen", "Issue a voucher"),
        "/office",
        body,
    )
}

/// A field's problem, tied to it for screen readers: `(field, sentence)`.
type FieldProblem<'a> = (&'static str, &'a str);

/// The issue form; after a refusal with what was typed (`filled`) and each field's problem.
fn issue_form(
    lang: Lang,
    console: &Console,
    signed: &Signed,
    problem: Option<Markup>,
    filled: Option<&HashMap<String, String>>,
    problems: &[FieldProblem<'_>],
) -> Markup {
    let default_cap = page::money(console.node.default_cap_cents);
    let value = |name: &str| {
        filled
            .and_then(|f| f.get(name))
            .cloned()
            .unwrap_or_default()
    };
    let checked = |name: &str| value(name) == "1";
    let error = |field: &str| problems.iter().find(|(f, _)| *f == field).map(|(_, p)| *p);
    html! {
        @if let Some(problem) = problem { (problem) }
        form.issue method="post" action="/office/issue" novalidate {
            input type="hidden" name="csrf" value=(signed.form_token(console));
            div.fields {
                label for="valid_until" { (lang.t("Gültig bis (leer: Ende des Quartals)", "Valid until (empty: end of the quarter)")) }
                @if let Some(e) = error("valid_until") {
                    input #valid_until name="valid_until" type="date" value=(value("valid_until")) aria-invalid="true" aria-describedby="valid_until-error";
                    p #valid_until-error.field-error { (e) }
                } @else {
                    input #valid_until name="valid_until" type="date" value=(value("valid_until"));
                }
                label for="cap" { (lang.t("Obergrenze für Behandlungen in Euro (leer: ", "Treatment cap in euros (empty: ")) (default_cap) ")" }
                @if let Some(e) = error("cap") {
                    input #cap name="cap" inputmode="decimal" autocomplete="off" value=(value("cap")) aria-invalid="true" aria-describedby="cap-error";
                    p #cap-error.field-error { (e) }
                } @else {
                    input #cap name="cap" inputmode="decimal" autocomplete="off" value=(value("cap"));
                }
            }
            fieldset {
                legend { (lang.t("Deckt zusätzlich zur ambulanten Grundversorgung ab", "Covers, besides ambulatory basic care")) }
                @for (scope, name) in EXTRA_SCOPES {
                    @let field = format!("scope_{name}");
                    label.check { input type="checkbox" name=(field) value="1" checked[checked(&field)]; " " (scope_word(lang, scope)) }
                }
            }
            fieldset {
                legend { (lang.t("Notfall", "Emergency")) }
                label.check { input type="checkbox" name="emergency" value="1" checked[checked("emergency")]; " " (lang.t("Notfall-Gutschein (eigenes Budget), nur für einen Anbieter", "Emergency voucher (own budget), for one provider only")) }
                label for="bound_provider" { (lang.t("Anbieter", "Provider")) }
                select #bound_provider name="bound_provider" {
                    option value="" { "—" }
                    @for provider in providers(console) {
                        option value=(provider) selected[value("bound_provider") == provider] { (provider) }
                    }
                }
            }
            button type="submit" { (lang.t("Gutschein ausstellen", "Issue the voucher")) }
        }
    }
}

async fn issue(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let office = match signed.may_change(&console, Operation::IssueVoucher, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let get = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let mut problems: Vec<FieldProblem<'_>> = Vec::new();
    let valid_until = match get("valid_until") {
        "" => None,
        text => match Day::parse(text) {
            Ok(day) => Some(day.into()),
            Err(_) => {
                problems.push((
                    "valid_until",
                    lang.t(
                        "Das Datum „gültig bis“ ist nicht lesbar.",
                        "The date “valid until” cannot be read.",
                    ),
                ));
                None
            }
        },
    };
    let cap_cents = match get("cap") {
        "" => None,
        text => match page::parse_money(text) {
            Some(cents) => Some(cents),
            None => {
                problems.push((
                    "cap",
                    lang.t(
                        "Die Obergrenze ist kein Euro-Betrag, z. B. 600 oder 600,00.",
                        "The cap is not an amount in euros, e.g. 600 or 600.00.",
                    ),
                ));
                None
            }
        },
    };
    let form_page = |problem: Markup, problems: &[FieldProblem<'_>]| {
        show(
            lang,
            &signed,
            &console,
            lang.t("Gutschein ausstellen", "Issue a voucher"),
            "/office",
            issue_form(
                lang,
                &console,
                &signed,
                Some(problem),
                Some(&form),
                problems,
            ),
        )
    };
    if !problems.is_empty() {
        return form_page(
            html! { div.answer.bad role="alert" { p { (lang.t("Bitte korrigieren Sie die markierten Felder.", "Please correct the marked fields.")) } } },
            &problems,
        );
    }
    let request = IssueVoucherRequest {
        emergency: get("emergency") == "1",
        bound_provider: get("bound_provider").to_owned(),
        valid_from: None,
        valid_until,
        scope: EXTRA_SCOPES
            .iter()
            .filter(|(_, value)| get(&format!("scope_{value}")) == "1")
            .map(|(s, _)| *s as i32)
            .collect(),
        cap_cents,
    };
    match vouchers::issue(&console.node, &office, &request).await {
        Ok(record) => {
            Redirect::to(&voucher_url(&console, &record.short_code, true)).into_response()
        }
        Err(error) => form_page(refusal(lang, &tonic::Status::from(error)), &[]),
    }
}

#[derive(serde::Deserialize, Default)]
struct CodeQuery {
    /// A handle from [`super::Handles`], never the code itself.
    #[serde(default)]
    h: String,
    #[serde(default)]
    new: String,
}

/// The voucher page's address for `code`, under a fresh handle.
fn voucher_url(console: &Console, code: &str, new: bool) -> String {
    let handle = console.handles.name(code);
    if new {
        format!("/office/voucher?h={handle}&new=1")
    } else {
        format!("/office/voucher?h={handle}")
    }
}

/// A button that opens a voucher's page (the code travels in the form, not in an address).
fn open_button(code: &str) -> Markup {
    html! {
        form.open method="post" action="/office/voucher" {
            input type="hidden" name="code" value=(code);
            button.link type="submit" { (code) }
        }
    }
}

/// Opens the page of the voucher named in a form (the list's search or one of its rows).
async fn find_voucher(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(page) = signed.may(&console, Operation::ShowVoucher) {
        return page;
    }
    let code = form.get("code").map(|c| c.trim()).unwrap_or_default();
    Redirect::to(&voucher_url(&console, code, false)).into_response()
}

fn state_word(lang: Lang, state: VoucherState) -> &'static str {
    match state {
        VoucherState::Active => lang.t("gültig", "active"),
        VoucherState::Revoked => lang.t("gesperrt", "revoked"),
        VoucherState::Expired => lang.t("abgelaufen", "expired"),
        VoucherState::NotYetValid => lang.t("noch nicht gültig", "not yet valid"),
        VoucherState::Unspecified => "?",
    }
}

fn voucher_card(lang: Lang, console: &Console, record: &VoucherRecord) -> Markup {
    let day = |d: Option<schein_proto::v1::Day>| d.map(Day::from).unwrap_or_else(Day::today);
    let covered: Vec<String> = covers(Lang::De, &record.scope)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let _ = lang;
    card(&Card {
        short_code: &record.short_code,
        full_code: &record.full_code,
        office: &format!("Clearingstelle {}", console.node.name),
        valid_from: day(record.valid_from),
        valid_until: day(record.valid_until),
        covers: covered,
        cap: record.cap_cents.map(page::money),
        emergency_for: (!record.bound_provider.is_empty())
            .then_some(record.bound_provider.as_str()),
    })
}

async fn voucher_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<CodeQuery>,
) -> Response {
    if let Err(page) = signed.may(&console, Operation::ShowVoucher) {
        return page;
    }
    let lang = signed.lang;
    let Some(code) = console.handles.code(&query.h) else {
        let body = html! {
            p.lead { (lang.t("Diese Seitenadresse ist abgelaufen. Suchen Sie den Gutschein in der Liste.", "This page address has expired. Find the voucher in the list.")) }
            p { a href="/office/vouchers" { (lang.t("Zur Liste", "To the list")) } }
        };
        return show(
            lang,
            &signed,
            &console,
            lang.t("Gutschein", "Voucher"),
            "/office/vouchers",
            body,
        );
    };
    let record = match vouchers::show(&console.node, &code) {
        Ok(record) => record,
        Err(error) => {
            let body = html! { (refusal(lang, &tonic::Status::from(error))) p { a href="/office/vouchers" { (lang.t("Zur Liste", "To the list")) } } };
            return show(
                lang,
                &signed,
                &console,
                lang.t("Gutschein", "Voucher"),
                "/office/vouchers",
                body,
            );
        }
    };
    let token = signed.form_token(&console);
    let body = html! {
        @if query.new == "1" {
            p.answer.good.no-print role="status" { (lang.t("Ausgestellt. Karte drucken und aushändigen.", "Issued. Print the card and hand it over.")) }
        }
        p.no-print { button.print type="button" data-print="" { (lang.t("Karte drucken", "Print the card")) } }
        (voucher_card(lang, &console, &record))
        section.no-print {
            h2 { (lang.t("Stand", "State")) }
            dl.facts {
                dt { (lang.t("Zustand", "State")) } dd { (state_word(lang, record.state())) }
                @if let Some(day) = record.issued_on { dt { (lang.t("Ausgestellt am", "Issued on")) } dd { (page::date(Day::from(day))) } }
                @if let Some(day) = record.revoked_on { dt { (lang.t("Gesperrt am", "Revoked on")) } dd { (page::date(Day::from(day))) } }
                dt { (lang.t("Abgerechnet (Behandlung)", "Settled (treatment)")) } dd { (page::money(record.claimed_cents)) }
                dt { (lang.t("Abgerechnet (Arzneimittel)", "Settled (medication)")) } dd { (page::money(record.medication_cents)) }
                @if let Some(cap) = record.pending_cap_cents { dt { (lang.t("Neue Obergrenze wartet auf zweite Person", "New cap waiting for a second person")) } dd { (page::money(cap)) } }
            }
            @if record.state() != VoucherState::Revoked {
                form.inline method="post" action="/office/revoke" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="code" value=(record.short_code);
                    label for="reason" { (lang.t("Sperren, weil", "Revoke, because")) }
                    select #reason name="reason" required {
                        option value="lost" { (lang.t("verloren", "lost")) }
                        option value="stolen" { (lang.t("gestohlen", "stolen")) }
                        option value="issued-in-error" { (lang.t("irrtümlich ausgestellt", "issued in error")) }
                        option value="replaced" { (lang.t("ersetzt", "replaced")) }
                    }
                    button.danger type="submit" { (lang.t("Gutschein sperren", "Revoke the voucher")) }
                }
                form.inline method="post" action="/office/approve" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="code" value=(record.short_code);
                    label for="new_cap" { (lang.t("Obergrenze erhöhen auf (Euro)", "Raise the cap to (euros)")) }
                    input #new_cap name="cap" inputmode="decimal" required;
                    button type="submit" { (lang.t("Erhöhen", "Raise")) }
                }
            }
        }
    };
    show(
        lang,
        &signed,
        &console,
        lang.t("Gutschein", "Voucher"),
        "/office/vouchers",
        body,
    )
}

async fn revoke(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let office = match signed.may_change(&console, Operation::RevokeVoucher, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let code = form.get("code").cloned().unwrap_or_default();
    let reason = match form.get("reason").map(String::as_str) {
        Some("lost") => RevocationReason::Lost,
        Some("stolen") => RevocationReason::Stolen,
        Some("issued-in-error") => RevocationReason::IssuedInError,
        Some("replaced") => RevocationReason::Replaced,
        _ => RevocationReason::Unspecified,
    };
    match vouchers::revoke(&console.node, &office, &code, reason as i32).await {
        Ok(record) => {
            Redirect::to(&voucher_url(&console, &record.short_code, false)).into_response()
        }
        Err(error) => {
            let lang = signed.lang;
            show(
                lang,
                &signed,
                &console,
                lang.t("Gutschein", "Voucher"),
                "/office/vouchers",
                refusal(lang, &tonic::Status::from(error)),
            )
        }
    }
}

async fn approve(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let office = match signed.may_change(&console, Operation::ApproveCap, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(cents) = form.get("cap").and_then(|c| page::parse_money(c)) else {
        return show(
            lang,
            &signed,
            &console,
            lang.t("Gutschein", "Voucher"),
            "/office/vouchers",
            html! {
                div.answer.bad role="alert" { p { (lang.t("Die neue Obergrenze ist kein Euro-Betrag.", "The new cap is not an amount in euros.")) } }
            },
        );
    };
    let body = match vouchers::approve_cap(&console.node, &office, &code, cents).await {
        Ok(answer) => html! {
            div.answer.(if answer.applied { "good" } else { "warn" }) role="status" { p.detail lang="en" { (answer.message) } }
            p { a href=(voucher_url(&console, &code, false)) { (lang.t("Zum Gutschein", "To the voucher")) } }
        },
        Err(error) => refusal(lang, &tonic::Status::from(error)),
    };
    show(
        lang,
        &signed,
        &console,
        lang.t("Obergrenze", "Cap"),
        "/office/vouchers",
        body,
    )
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    /// Where the list goes on (the last page's token).
    #[serde(default)]
    after: String,
}

async fn list_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(page) = signed.may(&console, Operation::ListVouchers) {
        return page;
    }
    let lang = signed.lang;
    let state = match query.state.as_str() {
        "active" => VoucherState::Active,
        "revoked" => VoucherState::Revoked,
        "expired" => VoucherState::Expired,
        _ => VoucherState::Unspecified,
    };
    let request = ListVouchersRequest {
        limit: 100,
        page_token: query.after.clone(),
        state: state as i32,
    };
    let (listed, next) = match vouchers::list(&console.node, &request) {
        Ok(list) => (list.vouchers, list.next_page_token),
        Err(error) => {
            return show(
                lang,
                &signed,
                &console,
                lang.t("Gutscheine", "Vouchers"),
                "/office/vouchers",
                refusal(lang, &tonic::Status::from(error)),
            );
        }
    };
    let body = html! {
        form.filters method="post" action="/office/voucher" role="search" {
            label for="q" { (lang.t("Kurzcode suchen", "Find a short code")) }
            input #q name="code" autocomplete="off" spellcheck="false";
            button type="submit" { (lang.t("Suchen", "Find")) }
        }
        form.filters method="get" action="/office/vouchers" {
            label for="state" { (lang.t("Zustand", "State")) }
            select #state name="state" {
                @for (value, word) in [("", lang.t("alle", "all")), ("active", lang.t("gültig", "active")), ("revoked", lang.t("gesperrt", "revoked")), ("expired", lang.t("abgelaufen", "expired"))] {
                    @if value == query.state { option value=(value) selected { (word) } } @else { option value=(value) { (word) } }
                }
            }
            button type="submit" { (lang.t("Filtern", "Filter")) }
        }
        @if listed.is_empty() { p { (lang.t("Keine Gutscheine.", "No vouchers.")) } } @else {
            table.list {
                thead { tr {
                    th scope="col" { (lang.t("Kurzcode", "Short code")) }
                    th scope="col" { (lang.t("Gültig bis", "Valid until")) }
                    th scope="col" { (lang.t("Zustand", "State")) }
                    th scope="col" { (lang.t("Abgerechnet", "Settled")) }
                } }
                tbody {
                    @for v in &listed {
                        tr {
                            td.code { (open_button(&v.short_code)) }
                            td { @if let Some(day) = v.valid_until { (page::date(Day::from(day))) } }
                            td { (state_word(lang, v.state())) @if v.emergency { " · " (lang.t("Notfall", "emergency")) } }
                            td.num { (page::money(v.claimed_cents + v.medication_cents)) }
                        }
                    }
                }
            }
            @if !next.is_empty() {
                p { a href={ "/office/vouchers?state=" (query.state) "&after=" (next) } { (lang.t("Ältere Gutscheine", "Older vouchers")) } }
            }
        }
    };
    show(
        lang,
        &signed,
        &console,
        lang.t("Gutscheine", "Vouchers"),
        "/office/vouchers",
        body,
    )
}

/// Raised caps waiting for a second office identity: each opens the voucher's page, where the
/// second person approves the same amount.
async fn caps_page(State(console): State<Console>, signed: Signed) -> Response {
    if let Err(page) = signed.may(&console, Operation::ApproveCap) {
        return page;
    }
    let lang = signed.lang;
    let waiting = match vouchers::pending_caps(&console.node) {
        Ok(waiting) => waiting,
        Err(error) => {
            return show(
                lang,
                &signed,
                &console,
                lang.t("Obergrenzen", "Caps"),
                "/office/caps",
                refusal(lang, &tonic::Status::from(error)),
            );
        }
    };
    let body = html! {
        p { (lang.t(
            "Eine Obergrenze über der Schwelle gilt erst, wenn eine zweite, andere Person der Clearingstelle denselben Betrag bestätigt. Öffnen Sie den Gutschein und geben Sie den Betrag noch einmal ein.",
            "A cap above the threshold applies only once a second, different person of the office approves the same amount. Open the voucher and enter the amount again."
        )) }
        @if waiting.is_empty() { p { (lang.t("Keine.", "None.")) } } @else {
            table.list {
                thead { tr {
                    th scope="col" { (lang.t("Gutschein", "Voucher")) }
                    th.num scope="col" { (lang.t("Jetzt", "Now")) }
                    th.num scope="col" { (lang.t("Beantragt", "Asked for")) }
                } }
                tbody {
                    @for v in &waiting {
                        tr {
                            td.code { (open_button(&v.short_code)) }
                            td.num { @match v.cap_cents { Some(c) => (page::money(c)), None => "—" } }
                            td.num { @if let Some(c) = v.pending_cap_cents { (page::money(c)) } }
                        }
                    }
                }
            }
        }
    };
    show(
        lang,
        &signed,
        &console,
        lang.t("Obergrenzen zur Bestätigung", "Caps to approve"),
        "/office/caps",
        body,
    )
}

async fn held_page(State(console): State<Console>, signed: Signed) -> Response {
    if let Err(page) = signed.may(&console, Operation::ListHeldClaims) {
        return page;
    }
    held(&console, &signed, None)
}

fn held(console: &Console, signed: &Signed, note: Option<Markup>) -> Response {
    let lang = signed.lang;
    let request = ListClaimsRequest {
        pending_only: false,
        limit: 200,
        ..Default::default()
    };
    let claims = match claim::list_held(&console.node, &request) {
        Ok(list) => list.claims,
        Err(error) => {
            return show(
                lang,
                signed,
                console,
                lang.t("Zurückgehaltene Abrechnungen", "Held claims"),
                "/office/held",
                refusal(lang, &tonic::Status::from(error)),
            );
        }
    };
    let token = signed.form_token(console);
    let body = html! {
        @if let Some(note) = note { (note) }
        p { (lang.t(
            "Diese Abrechnungen sehen aus wie eine schon eingereichte (gleicher Gutschein, gleiche Leistung, gleicher Tag). Freigeben, wenn es keine Doppelung ist.",
            "These claims look like one submitted before (same voucher, service and day). Release them if they are not duplicates."
        )) }
        @if claims.is_empty() { p { (lang.t("Keine.", "None.")) } } @else {
            table.list {
                thead { tr {
                    th scope="col" { (lang.t("Anbieter", "Provider")) }
                    th scope="col" { (lang.t("Gutschein", "Voucher")) }
                    th scope="col" { (lang.t("Tag", "Day")) }
                    th scope="col" { (lang.t("Betrag", "Amount")) }
                    th scope="col" { (lang.t("Entscheidung", "Decision")) }
                } }
                tbody {
                    @for c in &claims {
                        tr {
                            td { (c.provider) }
                            td.code { (c.voucher_short_code) }
                            td { @if let Some(day) = c.service_date { (page::date(Day::from(day))) } }
                            td.num { (page::money(c.amount_cents)) }
                            td {
                                form.inline method="post" action="/office/held" {
                                    input type="hidden" name="csrf" value=(token);
                                    input type="hidden" name="provider" value=(c.provider);
                                    input type="hidden" name="claim_id" value=(c.claim_id);
                                    button type="submit" name="decision" value="release" aria-label={ (lang.t("Freigeben: ", "Release: ")) (c.voucher_short_code) } { (lang.t("Freigeben", "Release")) }
                                    " "
                                    button.danger type="submit" name="decision" value="reject" aria-label={ (lang.t("Ablehnen: ", "Reject: ")) (c.voucher_short_code) } { (lang.t("Ablehnen", "Reject")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    show(
        lang,
        signed,
        console,
        lang.t("Zurückgehaltene Abrechnungen", "Held claims"),
        "/office/held",
        body,
    )
}

async fn decide_held(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let office = match signed.may_change(&console, Operation::DecideHeldClaim, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let release = match field("decision").as_str() {
        "release" => true,
        "reject" => false,
        _ => {
            return held(
                &console,
                &signed,
                Some(html! {
                    div.answer.bad role="alert" { p { (lang.t("Bitte „Freigeben“ oder „Ablehnen“ wählen.", "Choose “Release” or “Reject”.")) } }
                }),
            );
        }
    };
    let note = match claim::decide_held(
        &console.node,
        &office,
        &field("provider"),
        &field("claim_id"),
        release,
    )
    .await
    {
        Ok(record) => {
            html! { div.answer.good role="status" { p.detail lang="en" { (record.message) } } }
        }
        Err(error) => refusal(lang, &tonic::Status::from(error)),
    };
    held(&console, &signed, Some(note))
}

async fn clearing_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    if let Err(page) = signed.may(&console, Operation::ShowClearing) {
        return page;
    }
    let period = query.or_current();
    let result = clearing::parse_period(&period).and_then(|p| clearing::view(&console.node, p));
    clearing_result(
        &console,
        &signed,
        &period,
        result.map_err(tonic::Status::from),
    )
}

fn clearing_result(
    console: &Console,
    signed: &Signed,
    period: &str,
    result: Result<schein_proto::v1::ClearingResult, tonic::Status>,
) -> Response {
    let lang = signed.lang;
    let body = html! {
        (page::period_form(lang, "/office/clearing", period))
        @match &result {
            Err(status) => (refusal(lang, status)),
            Ok(result) => {
                div.answer.(if result.closed { "good" } else { "warn" }) role="status" { p.detail lang="en" { (result.message) } }
                @if let Some(day) = result.deadline { p { (lang.t("Abrechnungsfrist bis ", "Claims accepted until ")) (page::date(Day::from(day))) } }
                table.list {
                    caption { (lang.t("Je Stadt", "Per city")) }
                    thead { tr {
                        th scope="col" { (lang.t("Stadt", "City")) }
                        th scope="col" { (lang.t("Wir schulden", "We owe")) }
                        th scope="col" { (lang.t("Uns geschuldet", "Owed to us")) }
                        th scope="col" { (lang.t("Stand", "State")) }
                    } }
                    tbody {
                        @for pair in &result.pairs {
                            tr {
                                td { (pair.peer) }
                                td.num { (page::money(pair.liabilities_cents)) }
                                td.num { (page::money(pair.receivables_cents)) }
                                td { @if pair.closed { (lang.t("abgeschlossen", "closed")) } @else { (lang.t("offen", "open")) }
                                     @if pair.reached && !pair.agreed && pair.closed { " – " (lang.t("Bücher weichen ab", "books differ")) }
                                     @if !pair.note.is_empty() { br; span.detail lang="en" { (pair.note) } } }
                            }
                        }
                    }
                    tfoot { tr { th scope="row" { (lang.t("Saldo", "Net position")) } td.num colspan="2" { (page::money(result.net_position_cents)) } td {} } }
                }
                @if !result.closed {
                    form method="post" action="/office/clearing" {
                        input type="hidden" name="csrf" value=(signed.form_token(console));
                        input type="hidden" name="period" value=(period);
                        button type="submit" { (lang.t("Zeitraum abschließen", "Close the period")) }
                    }
                }
            }
        }
    };
    show(
        lang,
        signed,
        console,
        lang.t("Abrechnung mit den Städten", "Clearing with the cities"),
        "/office/clearing",
        body,
    )
}

async fn close_period(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let office = match signed.may_change(&console, Operation::CloseClearing, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let period = form.get("period").cloned().unwrap_or_default();
    let result = match clearing::parse_period(&period) {
        Ok(p) => clearing::close(&console.node, &office.name, p)
            .await
            .map_err(tonic::Status::from),
        Err(error) => Err(tonic::Status::from(error)),
    };
    clearing_result(&console, &signed, &period, result)
}

async fn status_page(State(console): State<Console>, signed: Signed) -> Response {
    if let Err(page) = signed.may(&console, Operation::Ledger) {
        return page;
    }
    status(&console, &signed, false).await
}

/// The same page with every ledger checked now: this node's own, and each peer's whole chain
/// against what this node witnessed. A POST, because it makes the node and every peer work.
async fn check_ledgers(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(page) = signed
        .may(&console, Operation::Ledger)
        .and_then(|_| signed.may_change(&console, Operation::PeerLedger, &form))
    {
        return page;
    }
    status(&console, &signed, true).await
}

/// How the node is doing: its outbox, its oldest pending claim, and its ledger and each peer's
/// as the last witness round left them — or, with `check`, as checked now.
async fn status(console: &Console, signed: &Signed, check: bool) -> Response {
    let lang = signed.lang;
    let node = &console.node;
    let roster = node.roster();
    let peers: Vec<_> = roster
        .members()
        .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
        .cloned()
        .collect();
    let checks = if check {
        let asked = peers
            .iter()
            .map(|peer| witness::check_peer(node, peer.id()));
        Some(futures::future::join_all(asked).await)
    } else {
        None
    };
    let own = check.then(|| crate::domain::ledger::verify_own(node));
    let head = node.store.ledger_head().map(|h| h.seq).unwrap_or(0);
    let outbox = node.store.outbox_depth();
    let undeliverable_count = node.store.undeliverable_count();
    let undeliverable = node
        .store
        .list_undeliverable(None, 50)
        .map(|(claims, _)| claims)
        .unwrap_or_default();
    let pending = claim::list_pending(node).unwrap_or_default();
    let oldest = pending
        .iter()
        .filter_map(|c| c.service_date)
        .map(Day::from)
        .min();
    let body = html! {
        dl.facts {
            dt { (lang.t("Knoten", "Node")) } dd { (node.name) " (" (node.id) ")" }
            dt { (lang.t("Abrechnungen unterwegs (Postausgang)", "Claims waiting to be delivered (outbox)")) } dd { (outbox) }
            dt { (lang.t("Älteste offene Abrechnung", "Oldest pending claim")) } dd { @match oldest { Some(day) => (page::date(day)), None => "—" } }
            dt { (lang.t("Nicht zustellbar (vom ausgebenden Amt abgewiesen)", "Undeliverable (refused by the issuing office)")) } dd { (undeliverable_count) }
            dt { (lang.t("Eigenes Hauptbuch", "Own ledger")) }
            dd { @match &own {
                None => { (head) (lang.t(" Einträge", " entries")) }
                Some(Ok(entries)) => { span.badge.good { (lang.t("stimmt", "checks out")) } " " (entries) (lang.t(" Einträge, jeder mit dem Hash des vorigen, Kopf unterschrieben", " entries, each holding the hash of the one before, head signed")) }
                Some(Err(problem)) => { span.badge.bad { (lang.t("FEHLER", "BROKEN")) } " " span lang="en" { (problem) } }
            } }
        }
        @if !undeliverable.is_empty() {
            h2 { (lang.t("Nicht zustellbare Abrechnungen", "Undeliverable claims")) }
            p { (lang.t(
                "Das ausgebende Amt hat diese Abrechnungen selbst abgewiesen; sie werden nicht noch einmal gesendet. Der Grund steht dabei.",
                "The issuing office refused these settlement records themselves; they are not sent again. The reason is given."
            )) }
            table.list {
                thead { tr {
                    th scope="col" { (lang.t("Anbieter", "Provider")) }
                    th scope="col" { (lang.t("Abrechnung", "Claim")) }
                    th scope="col" { (lang.t("Betrag", "Amount")) }
                    th scope="col" { (lang.t("Grund", "Reason")) }
                } }
                tbody {
                    @for c in &undeliverable {
                        tr {
                            td { (c.provider) }
                            td.code { (c.claim_id) }
                            td.num { (page::money(c.amount_cents)) }
                            td lang="en" { (c.message) }
                        }
                    }
                }
            }
        }
        form method="post" action="/office/status" {
            input type="hidden" name="csrf" value=(signed.form_token(console));
            button type="submit" { (lang.t("Alle Hauptbücher jetzt prüfen", "Check every ledger now")) }
        }
        table.list {
            caption { (lang.t("Andere Städte: hält ihr Hauptbuch, was sie uns gezeigt hat?", "Other cities: does its ledger hold what it showed us?")) }
            thead { tr {
                th scope="col" { (lang.t("Stadt", "City")) }
                th scope="col" { (lang.t("Zuletzt bezeugt", "Last witnessed")) }
                th scope="col" { (lang.t("Hauptbuch", "Ledger")) }
            } }
            tbody {
                @for (i, peer) in peers.iter().enumerate() {
                    @let witnessed = node.store.witnessed(peer.id()).ok().flatten();
                    @let alarm = node.store.contradiction(peer.id()).ok().flatten();
                    tr {
                        th scope="row" { (peer.name()) }
                        td { @match &witnessed {
                            Some(w) => { (lang.t("Eintrag ", "entry ")) (w.seq) ", " (page::date(Day::of_unix_seconds(w.at))) }
                            None => "—",
                        } }
                        td {
                            @if let Some(alarm) = &alarm {
                                span.badge.bad { (lang.t("VERÄNDERT", "CHANGED")) } " " span lang="en" { (alarm.finding) }
                            }
                            @match checks.as_ref().and_then(|c| c.get(i)) {
                                None => {}
                                Some(Ok(found)) if found.findings.is_empty() => {
                                    span.badge.good { (lang.t("stimmt", "consistent")) } " " (found.entries) (lang.t(" Einträge, ", " entries, ")) (found.receipts_checked) (lang.t(" Quittungen geprüft", " receipts checked"))
                                }
                                Some(Ok(found)) => {
                                    span.badge.bad { (lang.t("VERÄNDERT", "CHANGED")) }
                                    ul lang="en" { @for f in &found.findings { li { (f) } } }
                                }
                                Some(Err(witness::WitnessError::Unreachable(error))) => {
                                    span.badge.warn { (lang.t("nicht erreichbar", "not reachable")) } " " span lang="en" { (error) }
                                }
                                Some(Err(error)) => {
                                    span.badge.bad { (lang.t("ANTWORT UNGÜLTIG", "INVALID ANSWER")) } " " span lang="en" { (error.to_string()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    show(
        lang,
        signed,
        console,
        lang.t("Knoten", "Node"),
        "/office/status",
        body,
    )
}
