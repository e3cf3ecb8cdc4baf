//! The practice's and the pharmacy's pages: check a voucher (typed short code or a hand
//! scanner's full code, which ends with Enter and so submits the form), bill a treatment on it
//! (items from the issuing office's fee schedule, a preview with the total and what the cap
//! leaves, then the claim and a printable receipt), and the list of the practice's own claims.
//! Every decision is the domain core's: [`verify::verify`], [`claim::submit`],
//! [`claim::list_own`].

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use schein_proto::Day;
use schein_proto::code::{CodeError, VoucherCode};
use schein_proto::v1::{
    Category, ClaimItem, ClaimRecord, ClaimState, InvalidReason, ListClaimsRequest, ProviderKind,
    Scope, SubmitClaimRequest, Verdict, Verification, VoucherFacts,
};

use super::page::{self, Lang, Who};
use super::{Console, Signed};
use crate::domain::access::Operation;
use crate::domain::{claim, verify};
use crate::pki::Identity;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/practice", get(check_page).post(check_code))
        .route("/practice/check", post(live_check))
        .route("/practice/bill", post(bill))
        .route("/practice/claims", get(claims_page))
}

/// Most lines on one bill in the form.
const LINES: usize = 6;

fn who<'a>(signed: &'a Signed, console: &'a Console) -> Who<'a> {
    Who {
        role: signed.identity.role,
        name: &signed.identity.name,
        node_name: &console.node.name,
    }
}

#[derive(serde::Deserialize, Default)]
struct CheckQuery {
    #[serde(default)]
    code: String,
}

async fn check_page(State(console): State<Console>, signed: Signed) -> Response {
    check(console, signed, String::new()).await
}

/// The check of a code sent with the form: by POST, so that no code lands in the browser's
/// history or in an address.
async fn check_code(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let code = form
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    check(console, signed, code).await
}

async fn check(console: Console, signed: Signed, code: String) -> Response {
    let provider = match signed.may(&console, Operation::VerifyVoucher) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let code = code.as_str();
    let answer = if code.is_empty() {
        None
    } else {
        Some(verify::verify(&console.node, &provider, code, Scope::Unspecified).await)
    };
    let body = html! {
        (check_form(lang, code))
        @if let Some(answer) = &answer {
            (verdict(lang, answer))
            @if answer.verdict() == Verdict::Valid {
                @if let Some(facts) = &answer.voucher {
                    (bill_form(lang, &console, &signed, code, facts))
                }
            }
        }
    };
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(
            lang,
            lang.t("Gutschein prüfen", "Check a voucher"),
            Some(who(&signed, &console)),
            "/practice",
            body,
        ),
    )
}

fn check_form(lang: Lang, code: &str) -> Markup {
    html! {
        form.check method="post" action="/practice" {
            label for="code" { (lang.t(
                "Gutscheincode (eintippen oder mit dem Scanner lesen)",
                "Voucher code (type it or read it with the scanner)"
            )) }
            div.row {
                input #code name="code" type="text" value=(code) autocomplete="off"
                    autocapitalize="characters" spellcheck="false" autofocus
                    aria-describedby="code-hint code-live"
                    data-check="/practice/check";
                button type="submit" { (lang.t("Prüfen", "Check")) }
            }
            p #code-hint.hint { (lang.t(
                "Kurzcode wie LEJ-7KQ4-M2XD-9FTR-WB3H-Q oder der QR-Code der Karte (SCHEIN:…).",
                "Short code like LEJ-7KQ4-M2XD-9FTR-WB3H-Q or the card's QR code (SCHEIN:…)."
            )) }
            p #code-live.live aria-live="polite" {}
            div #camera.camera.no-print hidden {
                button type="button" #camera-start { (lang.t("Mit der Kamera lesen", "Read with the camera")) }
                video #camera-video muted playsinline hidden {}
            }
        }
    }
}

fn verdict_words(lang: Lang, answer: &Verification) -> (&'static str, &'static str) {
    match answer.verdict() {
        Verdict::Valid => (lang.t("GÜLTIG", "VALID"), "good"),
        Verdict::Invalid => (lang.t("UNGÜLTIG", "INVALID"), "bad"),
        Verdict::StatusUnknown => (lang.t("NICHT BESTÄTIGT", "NOT CONFIRMED"), "warn"),
        Verdict::IssuerUnreachable | Verdict::Unspecified => {
            (lang.t("JETZT NICHT PRÜFBAR", "CANNOT CHECK NOW"), "warn")
        }
    }
}

fn reason_words(lang: Lang, reason: InvalidReason) -> Option<&'static str> {
    Some(match reason {
        InvalidReason::Unspecified => return None,
        InvalidReason::Malformed => lang.t(
            "Der Code ist beschädigt oder unvollständig.",
            "The code is damaged or incomplete.",
        ),
        InvalidReason::CheckCharacter => lang.t(
            "Vertippt: das Prüfzeichen stimmt nicht.",
            "Mistyped: the check character does not match.",
        ),
        InvalidReason::UnknownIssuer => lang.t(
            "Diese Ausgabestelle ist nicht im Verbund.",
            "This issuing office is not in the federation.",
        ),
        InvalidReason::UnknownKey | InvalidReason::BadSignature => lang.t(
            "Fälschung: die Unterschrift stimmt nicht.",
            "Forged: the signature does not verify.",
        ),
        InvalidReason::NotYetValid => lang.t("Noch nicht gültig.", "Not valid yet."),
        InvalidReason::Expired => lang.t("Abgelaufen.", "Expired."),
        InvalidReason::Revoked => lang.t(
            "Gesperrt (verloren, gestohlen oder ersetzt).",
            "Revoked (lost, stolen or replaced).",
        ),
        InvalidReason::UnknownVoucher => lang.t(
            "Diesen Gutschein hat die Ausgabestelle nicht ausgestellt.",
            "The issuing office never issued this voucher.",
        ),
        InvalidReason::OutOfScope => lang.t(
            "Deckt diese Leistung nicht ab.",
            "Does not cover this kind of care.",
        ),
        InvalidReason::BoundElsewhere => lang.t(
            "NICHT FÜR SIE: Notfall-Gutschein für einen anderen Anbieter.",
            "NOT FOR YOU: an emergency voucher for another provider.",
        ),
        InvalidReason::KeyCompromised => lang.t(
            "Mit einem gestohlenen Schlüssel unterschrieben: ungültig.",
            "Signed with a stolen key: void.",
        ),
    })
}

pub(super) fn scope_word(lang: Lang, scope: Scope) -> &'static str {
    match scope {
        Scope::Unspecified | Scope::Ambulatory => {
            lang.t("ambulante Grundversorgung", "ambulatory basic care")
        }
        Scope::Medication => lang.t("Arzneimittel", "medication"),
        Scope::PregnancyCare => lang.t("Schwangerschaftsvorsorge", "pregnancy care"),
        Scope::SpecialistReferral => lang.t("Überweisung zum Facharzt", "referral to a specialist"),
        Scope::Dental => lang.t("Zahnbehandlung", "dental care"),
    }
}

/// What a voucher covers, ambulatory care always first.
pub(super) fn covers(lang: Lang, scopes: &[i32]) -> Vec<&'static str> {
    let mut words = vec![scope_word(lang, Scope::Ambulatory)];
    for scope in scopes.iter().filter_map(|s| Scope::try_from(*s).ok()) {
        let word = scope_word(lang, scope);
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

fn verdict(lang: Lang, answer: &Verification) -> Markup {
    let (word, class) = verdict_words(lang, answer);
    html! {
        section.answer.(class) role="status" aria-live="polite" {
            p.big { (word) }
            @if let Some(reason) = reason_words(lang, answer.reason()) { p.reason { (reason) } }
            @if answer.verdict() == Verdict::StatusUnknown {
                p.reason { (lang.t(
                    "Echt und gültig, aber die Ausgabestelle war nicht erreichbar: vor der Abrechnung noch einmal prüfen.",
                    "Genuine and valid, but the issuing office could not be asked: check again before billing."
                )) }
            }
            p.detail lang="en" { (answer.message) }
            @if let Some(facts) = &answer.voucher { (facts_list(lang, facts)) }
        }
    }
}

fn facts_list(lang: Lang, facts: &VoucherFacts) -> Markup {
    html! {
        dl.facts {
            dt { (lang.t("Ausgestellt von", "Issued by")) }
            dd { (facts.issuer_name) }
            @if !facts.short_code.is_empty() {
                dt { (lang.t("Kurzcode", "Short code")) } dd.code { (facts.short_code) }
            }
            @if let (Some(from), Some(until)) = (facts.valid_from, facts.valid_until) {
                dt { (lang.t("Gültig", "Valid")) }
                dd { (page::date(Day::from(from))) " – " (page::date(Day::from(until))) }
            }
            dt { (lang.t("Deckt ab", "Covers")) }
            dd { (covers(lang, &facts.scope).join(", ")) }
            @if let Some(left) = facts.remaining_cap_cents {
                dt { (lang.t("Noch verfügbar (Behandlung)", "Left for treatment")) }
                dd { (page::money(left)) }
            }
            @if let Some(left) = facts.remaining_medication_cents {
                dt { (lang.t("Noch verfügbar (Arzneimittel)", "Left for medication")) }
                dd { (page::money(left)) }
            }
            @if facts.emergency {
                dt { (lang.t("Notfall-Gutschein", "Emergency voucher")) }
                dd { (lang.t("nur für ", "only for ")) (facts.bound_provider) }
            }
        }
    }
}

/// The fee codes of the issuer's schedule, as choices the browser filters while typing.
fn fee_choices(console: &Console, issuer: &str) -> Vec<(String, i64)> {
    let roster = console.node.roster();
    let Some(member) = roster.member(issuer) else {
        return Vec::new();
    };
    let schedule = member.fee_schedule();
    schedule
        .catalogues
        .iter()
        .flat_map(|c| c.items.keys())
        .filter_map(|code| {
            schedule
                .max_unit_cents(code)
                .map(|(unit, _)| (code.clone(), unit))
        })
        .collect()
}

fn bill_form(
    lang: Lang,
    console: &Console,
    signed: &Signed,
    code: &str,
    facts: &VoucherFacts,
) -> Markup {
    let choices = fee_choices(console, &facts.issuer);
    let medication = facts.scope.contains(&(Scope::Medication as i32));
    html! {
        section.bill {
            h2 { (lang.t("Behandlung abrechnen", "Bill the treatment")) }
            form method="post" action="/practice/bill" {
                input type="hidden" name="csrf" value=(signed.form_token(console));
                input type="hidden" name="code" value=(code);
                input type="hidden" name="claim_id" value=(new_claim_id());
                datalist #fees {
                    @for (fee, unit) in &choices {
                        option value=(fee) { (fee) " – " (lang.t("bis ", "up to ")) (page::money(*unit)) }
                    }
                }
                div.fields {
                    label for="date" { (lang.t("Tag der Behandlung", "Day of treatment")) }
                    input #date name="date" type="date" value=(Day::today().to_string()) required;
                    label for="kind" { (lang.t("Sie sind", "You are")) }
                    select #kind name="kind" {
                        option value="practice" { (lang.t("Arztpraxis", "Practice")) }
                        option value="dentist" { (lang.t("Zahnarztpraxis", "Dentist")) }
                        option value="hospital" { (lang.t("Krankenhaus", "Hospital")) }
                        option value="pharmacy" { (lang.t("Apotheke", "Pharmacy")) }
                        option value="interpreter" { (lang.t("Sprachmittlung", "Interpreter")) }
                    }
                    label for="category" { (lang.t("Art", "Kind")) }
                    select #category name="category" {
                        option value="treatment" { (lang.t("Behandlung", "Treatment")) }
                        @if medication { option value="medication" { (lang.t("Arzneimittel", "Medication")) } }
                    }
                }
                table.lines {
                    caption { (lang.t("Leistungen (Gebührenziffer aus der Liste der ausstellenden Stelle)", "Items (fee code from the issuing office's schedule)")) }
                    thead { tr {
                        th scope="col" { (lang.t("Gebührenziffer", "Fee code")) }
                        th scope="col" { (lang.t("Anzahl", "Count")) }
                        th scope="col" { (lang.t("Betrag (leer: Satz der Liste)", "Amount (empty: schedule rate)")) }
                    } }
                    tbody {
                        @for i in 1..=LINES {
                            tr {
                                td { input name={ "fee_" (i) } list="fees" aria-label={ (lang.t("Gebührenziffer", "Fee code")) " " (i) } autocomplete="off"; }
                                td { input name={ "count_" (i) } type="number" min="1" max="99" value="1" aria-label={ (lang.t("Anzahl", "Count")) " " (i) }; }
                                td { input name={ "amount_" (i) } inputmode="decimal" aria-label={ (lang.t("Betrag", "Amount")) " " (i) }; }
                            }
                        }
                    }
                }
                button type="submit" name="step" value="preview" { (lang.t("Weiter: Summe prüfen", "Next: check the total")) }
            }
        }
    }
}

/// A fresh claim id, made when the form is shown, so that sending the same form twice (a
/// double click, a reload) makes one claim.
fn new_claim_id() -> String {
    let bytes: [u8; 8] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

/// The bill as typed, checked against the issuer's schedule where it says nothing new.
struct Bill {
    items: Vec<ClaimItem>,
    problems: Vec<String>,
}

fn read_bill(lang: Lang, form: &HashMap<String, String>, choices: &[(String, i64)]) -> Bill {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for i in 1..=LINES {
        let field = |name: &str| {
            form.get(&format!("{name}_{i}"))
                .map(|v| v.trim())
                .unwrap_or("")
        };
        let fee = field("fee").to_ascii_uppercase();
        if fee.is_empty() {
            continue;
        }
        let count: u32 = match field("count").parse() {
            Ok(n) if (1..=99).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "{} {i}: {}",
                    lang.t("Zeile", "Line"),
                    lang.t("Anzahl 1 bis 99", "count 1 to 99")
                ));
                continue;
            }
        };
        let unit = choices
            .iter()
            .find(|(code, _)| *code == fee)
            .map(|(_, unit)| *unit);
        let amount = match (field("amount"), unit) {
            ("", Some(unit)) => Some(unit.saturating_mul(i64::from(count))),
            ("", None) => None,
            (typed, _) => page::parse_money(typed),
        };
        match amount {
            Some(amount_cents) => items.push(ClaimItem {
                fee_code: fee,
                count,
                amount_cents,
            }),
            None => problems.push(format!(
                "{} {i}: {}",
                lang.t("Zeile", "Line"),
                lang.t(
                    "Betrag nicht lesbar, oder die Ziffer steht nicht in der Liste",
                    "amount unreadable, or the code is not in the schedule"
                )
            )),
        }
    }
    if items.is_empty() && problems.is_empty() {
        problems.push(
            lang.t(
                "Mindestens eine Leistung eintragen.",
                "Enter at least one item.",
            )
            .to_owned(),
        );
    }
    Bill { items, problems }
}

async fn bill(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let provider = match signed.may_change(&console, Operation::SubmitClaim, &form) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let get = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let code = get("code");
    let answer = verify::verify(&console.node, &provider, &code, Scope::Unspecified).await;
    let Some(facts) = answer
        .voucher
        .clone()
        .filter(|_| answer.verdict() == Verdict::Valid)
    else {
        let body = html! { (verdict(lang, &answer)) p { a href="/practice" { (lang.t("Neu prüfen", "Check again")) } } };
        return page::respond(
            lang,
            StatusCode::OK,
            page::frame(
                lang,
                lang.t("Abrechnen", "Bill"),
                Some(who(&signed, &console)),
                "/practice",
                body,
            ),
        );
    };
    let choices = fee_choices(&console, &facts.issuer);
    let bill = read_bill(lang, &form, &choices);
    let category = if get("category") == "medication" {
        Category::Medication
    } else {
        Category::Treatment
    };
    let total: i64 = bill.items.iter().map(|i| i.amount_cents).sum();
    let left = match category {
        Category::Medication => facts.remaining_medication_cents,
        _ => facts.remaining_cap_cents,
    };
    if get("step") != "send" || !bill.problems.is_empty() {
        let body = html! {
            @if !bill.problems.is_empty() {
                div.answer.bad role="alert" {
                    p { (lang.t("Bitte korrigieren:", "Please correct:")) }
                    ul { @for problem in &bill.problems { li { (problem) } } }
                }
                form method="post" action="/practice" {
                    input type="hidden" name="code" value=(code);
                    button type="submit" { (lang.t("Zurück zum Formular", "Back to the form")) }
                }
            } @else {
                (preview(lang, &console, &signed, &form, &bill.items, total, left))
            }
        };
        return page::respond(
            lang,
            StatusCode::OK,
            page::frame(
                lang,
                lang.t("Abrechnung prüfen", "Check the bill"),
                Some(who(&signed, &console)),
                "/practice",
                body,
            ),
        );
    }
    let kind = match get("kind").as_str() {
        "dentist" => ProviderKind::Dentist,
        "hospital" => ProviderKind::Hospital,
        "pharmacy" => ProviderKind::Pharmacy,
        "interpreter" => ProviderKind::Interpreter,
        _ => ProviderKind::Practice,
    };
    let service_date = Day::parse(&get("date")).ok().map(Into::into);
    let request = SubmitClaimRequest {
        claim_id: get("claim_id"),
        code,
        service_date,
        provider_kind: kind as i32,
        items: bill.items,
        category: category as i32,
    };
    match claim::submit(&console.node, &provider, request).await {
        Ok(record) => receipt_page(lang, &console, &signed, &record),
        Err(error) => {
            let status = tonic::Status::from(error);
            page::respond(
                lang,
                StatusCode::OK,
                page::frame(
                    lang,
                    lang.t("Nicht abgerechnet", "Not billed"),
                    Some(who(&signed, &console)),
                    "/practice",
                    html! {
                        div.answer.bad role="alert" { p.big { (lang.t("NICHT ABGERECHNET", "NOT BILLED")) } p.detail lang="en" { (status.message()) } }
                        p { a href="/practice" { (lang.t("Neuer Gutschein", "Next voucher")) } }
                    },
                ),
            )
        }
    }
}

fn preview(
    lang: Lang,
    console: &Console,
    signed: &Signed,
    form: &HashMap<String, String>,
    items: &[ClaimItem],
    total: i64,
    left: Option<i64>,
) -> Markup {
    let over = left.is_some_and(|left| total > left);
    html! {
        table.lines {
            thead { tr { th scope="col" { (lang.t("Gebührenziffer", "Fee code")) } th scope="col" { (lang.t("Anzahl", "Count")) } th scope="col" { (lang.t("Betrag", "Amount")) } } }
            tbody { @for item in items { tr { td { (item.fee_code) } td { (item.count) } td.num { (page::money(item.amount_cents)) } } } }
            tfoot { tr { th scope="row" colspan="2" { (lang.t("Summe", "Total")) } td.num { strong { (page::money(total)) } } } }
        }
        @if let Some(left) = left {
            p.lead.(if over { "warn" } else { "" }) {
                (lang.t("Noch verfügbar auf dem Gutschein: ", "Left on the voucher: ")) strong { (page::money(left)) }
                @if over { " – " (lang.t("die Summe ist höher; die Ausgabestelle wird ablehnen.", "the total is higher; the issuing office will refuse it.")) }
            }
        }
        form method="post" action="/practice/bill" {
            @for (name, value) in form.iter().filter(|(name, _)| name.as_str() != "step") {
                input type="hidden" name=(name) value=(value);
            }
            input type="hidden" name="csrf" value=(signed.form_token(console));
            button type="submit" name="step" value="send" { (lang.t("Jetzt abrechnen", "Send the bill")) }
        }
    }
}

fn state_words(lang: Lang, state: ClaimState) -> (&'static str, &'static str) {
    match state {
        ClaimState::Settled => (lang.t("BEZAHLT", "SETTLED"), "good"),
        ClaimState::Rejected => (lang.t("ABGELEHNT", "REJECTED"), "bad"),
        ClaimState::Pending => (lang.t("UNTERWEGS", "PENDING"), "warn"),
        ClaimState::Held => (lang.t("ZURÜCKGEHALTEN", "HELD"), "warn"),
        ClaimState::Undeliverable => (lang.t("NICHT ZUSTELLBAR", "UNDELIVERABLE"), "bad"),
        ClaimState::Unspecified => ("?", "warn"),
    }
}

fn receipt_page(lang: Lang, console: &Console, signed: &Signed, record: &ClaimRecord) -> Response {
    let (word, class) = state_words(lang, record.state());
    let body = html! {
        section.answer.(class) role="status" {
            p.big { (word) }
            p.detail lang="en" { (record.message) }
        }
        section.receipt {
            h2 { (lang.t("Beleg", "Receipt")) }
            dl.facts {
                dt { (lang.t("Abrechnungsnummer", "Claim id")) } dd.code { (record.claim_id) }
                dt { (lang.t("Gutschein", "Voucher")) } dd.code { (record.voucher_short_code) }
                dt { (lang.t("Ausgabestelle", "Issued by")) }
                dd { (console.node.roster().member(&record.issuer).map_or(record.issuer.as_str(), |m| m.name()).to_owned()) }
                @if let Some(day) = record.service_date { dt { (lang.t("Behandlungstag", "Day of treatment")) } dd { (page::date(Day::from(day))) } }
                dt { (lang.t("Betrag", "Amount")) } dd { (page::money(record.amount_cents)) }
                @if let Some(left) = record.remaining_cap_cents { dt { (lang.t("Noch verfügbar", "Left on the voucher")) } dd { (page::money(left)) } }
                @if record.issuer_ledger_seq > 0 { dt { (lang.t("Quittung", "Receipt")) } dd { (lang.t("unterschrieben, Eintrag ", "signed, entry ")) (record.issuer_ledger_seq) (lang.t(" im Hauptbuch der Ausgabestelle", " of the issuer's ledger")) } }
            }
            p.no-print {
                button.print type="button" data-print="" { (lang.t("Beleg drucken", "Print the receipt")) }
                " " a href="/practice" { (lang.t("Nächster Gutschein", "Next voucher")) }
                " · " a href="/practice/claims" { (lang.t("Meine Abrechnungen", "My claims")) }
            }
        }
    };
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(
            lang,
            lang.t("Abrechnung", "Claim"),
            Some(who(signed, console)),
            "/practice",
            body,
        ),
    )
}

#[derive(serde::Deserialize, Default)]
struct ClaimsQuery {
    #[serde(default)]
    state: String,
    /// Where the list goes on (the last page's token).
    #[serde(default)]
    after: String,
}

async fn claims_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ClaimsQuery>,
) -> Response {
    let provider: Identity = match signed.may(&console, Operation::ListClaims) {
        Ok(identity) => identity,
        Err(page) => return page,
    };
    let lang = signed.lang;
    let wanted = match query.state.as_str() {
        "settled" => Some(ClaimState::Settled),
        "rejected" => Some(ClaimState::Rejected),
        "pending" => Some(ClaimState::Pending),
        "held" => Some(ClaimState::Held),
        "undeliverable" => Some(ClaimState::Undeliverable),
        _ => None,
    };
    let request = ListClaimsRequest {
        pending_only: false,
        limit: 200,
        page_token: query.after.clone(),
        undeliverable_only: false,
    };
    let (claims, next) = match claim::list_own(&console.node, &provider, &request) {
        Ok(list) => (list.claims, list.next_page_token),
        Err(error) => {
            let status = tonic::Status::from(error);
            return page::message(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                lang.t("Fehler", "Error"),
                status.message(),
            );
        }
    };
    let shown: Vec<&ClaimRecord> = claims
        .iter()
        .filter(|c| wanted.is_none_or(|w| c.state() == w))
        .collect();
    let filters = [
        ("", lang.t("alle", "all")),
        ("pending", lang.t("unterwegs", "pending")),
        ("held", lang.t("zurückgehalten", "held")),
        ("settled", lang.t("bezahlt", "settled")),
        ("rejected", lang.t("abgelehnt", "rejected")),
    ];
    let body = html! {
        form.filters method="get" action="/practice/claims" {
            label for="state" { (lang.t("Zeigen", "Show")) }
            select #state name="state" {
                @for (value, word) in filters {
                    @if value == query.state { option value=(value) selected { (word) } } @else { option value=(value) { (word) } }
                }
            }
            button type="submit" { (lang.t("Filtern", "Filter")) }
        }
        @if shown.is_empty() {
            p { (lang.t("Keine Abrechnungen.", "No claims.")) }
        } @else {
            table.list {
                thead { tr {
                    th scope="col" { (lang.t("Tag", "Day")) }
                    th scope="col" { (lang.t("Gutschein", "Voucher")) }
                    th scope="col" { (lang.t("Betrag", "Amount")) }
                    th scope="col" { (lang.t("Stand", "State")) }
                    th scope="col" { (lang.t("Hinweis", "Note")) }
                } }
                tbody {
                    @for claim in &shown {
                        @let (word, class) = state_words(lang, claim.state());
                        tr {
                            td { @if let Some(day) = claim.service_date { (page::date(Day::from(day))) } }
                            td.code { (claim.voucher_short_code) }
                            td.num { (page::money(claim.amount_cents)) }
                            td { span.badge.(class) { (word) } }
                            td lang="en" { (claim.message) }
                        }
                    }
                }
            }
        }
        @if !next.is_empty() {
            p { a href={ "/practice/claims?state=" (query.state) "&after=" (next) } { (lang.t("Ältere Abrechnungen", "Older claims")) } }
        }
    };
    page::respond(
        lang,
        StatusCode::OK,
        page::frame(
            lang,
            lang.t("Meine Abrechnungen", "My claims"),
            Some(who(&signed, &console)),
            "/practice/claims",
            body,
        ),
    )
}

/// The live check while typing: whether what is typed so far reads as a code.
/// By POST: even a partly typed code stays out of every address.
async fn live_check(lang: Lang, Form(query): Form<CheckQuery>) -> impl IntoResponse {
    let (state, text) = match VoucherCode::parse(&query.code) {
        Ok(_) => (
            "ok",
            lang.t(
                "Code vollständig, Prüfzeichen stimmt.",
                "Code complete, check character fits.",
            ),
        ),
        Err(CodeError::WrongLength(..)) | Err(CodeError::NotACode) => (
            "incomplete",
            lang.t("Noch nicht vollständig …", "Not complete yet …"),
        ),
        Err(CodeError::CheckCharacter) => (
            "typo",
            lang.t(
                "Vertippt? Das Prüfzeichen passt nicht.",
                "Mistyped? The check character does not fit.",
            ),
        ),
        Err(_) => (
            "bad",
            lang.t("Das ist kein Gutscheincode.", "This is not a voucher code."),
        ),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "state": state, "text": text }).to_string(),
    )
}
