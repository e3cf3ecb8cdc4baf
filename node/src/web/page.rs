//! What every page shares: the language (German first, English switchable), the frame with
//! header, navigation and footer, a page for a message, and numbers and dates in German form.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use schein_proto::Day;
use schein_proto::money::Cents;

use crate::pki::Role;

/// The language a page is shown in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    De,
    En,
}

impl Lang {
    /// The German or the English text.
    pub fn t<'a>(self, de: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::De => de,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::De => Lang::En,
            Lang::En => Lang::De,
        }
    }
}

impl Lang {
    /// The language the `lang` cookie names (German without one).
    pub(super) fn from_headers(headers: &axum::http::HeaderMap) -> Lang {
        let english = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("lang="))
            .is_some_and(|v| v == "en");
        if english { Lang::En } else { Lang::De }
    }
}

/// `?lang=en` chooses; otherwise the `lang` cookie the switch set; otherwise German.
impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let from_query = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("lang="))
                .map(|v| v == "en")
        });
        Ok(match from_query {
            Some(true) => Lang::En,
            Some(false) => Lang::De,
            None => Lang::from_headers(&parts.headers),
        })
    }
}

/// Who is signed in, for the header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Who<'a> {
    pub role: Role,
    pub name: &'a str,
    pub node_name: &'a str,
}

/// Navigation entries per role: (path, German, English).
fn nav(role: Role) -> &'static [(&'static str, &'static str, &'static str)] {
    match role {
        Role::Provider => &[
            ("/practice", "Gutschein prüfen", "Check a voucher"),
            ("/practice/claims", "Meine Abrechnungen", "My claims"),
        ],
        Role::Office => &[
            ("/office", "Gutschein ausstellen", "Issue a voucher"),
            ("/office/vouchers", "Gutscheine", "Vouchers"),
            (
                "/office/held",
                "Zurückgehaltene Abrechnungen",
                "Held claims",
            ),
            ("/office/caps", "Obergrenzen", "Caps"),
            ("/office/clearing", "Abrechnung mit Städten", "Clearing"),
            ("/funder", "Bericht", "Report"),
            ("/funder/federation", "Verbund", "Federation"),
            ("/office/status", "Knoten", "Node"),
        ],
        Role::Funder => &[
            ("/funder", "Übersicht", "Dashboard"),
            ("/funder/federation", "Verbund", "Federation"),
        ],
        Role::Node => &[],
    }
}

/// A whole page: `title`, the body, for `who` (none: a visitor not signed in). `current` is the
/// path of the navigation entry to mark.
pub(super) fn frame(
    lang: Lang,
    title: &str,
    who: Option<Who<'_>>,
    current: &str,
    body: Markup,
) -> Markup {
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – schein" }
                link rel="stylesheet" href="/assets/style.css";
                link rel="stylesheet" href="/assets/card.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip.no-print href="#main" { (lang.t("Zum Inhalt springen", "Skip to content")) }
                header.no-print {
                    div.brand {
                        span.logo aria-hidden="true" { "§" }
                        " schein"
                        @if let Some(who) = who { span.node { " · " (who.node_name) } }
                    }
                    @if let Some(who) = who {
                        p.who {
                            (lang.t("Angemeldet als", "Signed in as")) " "
                            strong { (who.name) } " (" (role_word(lang, who.role)) ")"
                        }
                    }
                    // To the section's own page: the page shown may be the answer to a form.
                    a.lang href={ (if current.is_empty() { "/" } else { current }) "?lang=" (other.code()) } hreflang=(other.code()) lang=(other.code()) {
                        (other.t("Deutsch", "English"))
                    }
                }
                @if let Some(who) = who {
                    nav.no-print aria-label=(lang.t("Hauptnavigation", "Main navigation")) {
                        ul {
                            @for (path, de, en) in nav(who.role) {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (lang.t(de, en)) }
                                    } @else {
                                        a href=(path) { (lang.t(de, en)) }
                                    }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer.no-print {
                    p { (lang.t(
                        "schein – anonyme Behandlungsgutscheine. Niemand muss einen Namen nennen.",
                        "schein – anonymous treatment vouchers. Nobody has to give a name."
                    )) }
                }
            }
        }
    }
}

pub(super) fn role_word(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::Office => lang.t("Clearingstelle", "clearing office"),
        Role::Provider => lang.t("Praxis / Apotheke", "practice / pharmacy"),
        Role::Funder => lang.t("Mittelgeber", "funder"),
        Role::Node => lang.t("Knoten", "node"),
    }
}

/// A page as a response, with the language cookie kept if it was chosen by the switch.
pub(super) fn respond(lang: Lang, status: StatusCode, page: Markup) -> Response {
    let cookie = format!(
        "lang={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=31536000",
        lang.code()
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Html(page.into_string()),
    )
        .into_response()
}

/// A page with one message.
pub(super) fn message(lang: Lang, status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        p.lead { (text) }
        p { a href="/" { (lang.t("Zur Startseite", "To the start page")) } }
    };
    respond(lang, status, frame(lang, title, None, "", body))
}

/// A page's `?period=` (2026-Q4, 2026-11, 2026).
#[derive(serde::Deserialize, Default)]
pub(super) struct PeriodQuery {
    #[serde(default)]
    period: String,
}

impl PeriodQuery {
    /// The period asked for, or the current quarter.
    pub(super) fn or_current(&self) -> String {
        let asked = self.period.trim();
        if !asked.is_empty() {
            return asked.to_owned();
        }
        Day::today()
            .month()
            .map(|m| schein_proto::period::Period::containing(m)[1].to_string())
            .unwrap_or_default()
    }
}

/// The form that chooses a period on a page at `action`.
pub(super) fn period_form(lang: Lang, action: &str, period: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label for="period" { (lang.t("Zeitraum (z. B. 2026-Q4, 2026-11, 2026)", "Period (e.g. 2026-Q4, 2026-11, 2026)")) }
            input #period name="period" value=(period);
            button type="submit" { (lang.t("Anzeigen", "Show")) }
        }
    }
}

/// 30.11.2026
pub(super) fn date(day: Day) -> String {
    super::card::german_date(day)
}

/// 1.234,56 € (German grouping and decimal comma).
pub(super) fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let euros = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped},{:02} €", cents % 100)
}

/// Money typed in a form: "12,50", "12.50", "12" → cents.
pub(super) fn parse_money(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('€').trim();
    let normalised = match (text.rfind(','), text.rfind('.')) {
        (Some(_), _) => text.replace('.', "").replace(',', "."),
        _ => text.to_owned(),
    };
    Cents::parse_euros(&normalised).ok().map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_money_in_german_form() {
        let day = Day::parse("2026-11-30").expect("a day");
        assert_eq!(date(day), "30.11.2026");
        assert_eq!(money(123_456), "1.234,56 €");
        assert_eq!(money(5), "0,05 €");
        assert_eq!(money(100_000_000), "1.000.000,00 €");
        assert_eq!(money(-250), "-2,50 €");
        assert_eq!(parse_money("12,50"), Some(1250));
        assert_eq!(parse_money("1.234,56 €"), Some(123_456));
        assert_eq!(parse_money("4.66"), Some(466));
        assert_eq!(parse_money("zwölf"), None);
    }
}
