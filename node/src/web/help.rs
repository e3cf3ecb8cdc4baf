//! The pages for visitors who cannot be served yet: no certificate (how to import the `.p12`
//! file, in German and English at once — the visitor has not chosen a language yet), a
//! certificate this node does not accept, and a role that is not meant for a page.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};

use super::Console;
use super::page::{self, Lang};

pub(super) fn routes() -> Router<Console> {
    Router::new().route(
        "/help",
        get(|lang: Lang| async move { no_certificate(lang, None) }),
    )
}

fn import_steps_de() -> Markup {
    html! {
        ol {
            li { "Ihre Clearingstelle hat Ihnen eine Zertifikatsdatei gegeben (Endung " code { ".p12" } ") und ein Passwort dazu." }
            li { strong { "Windows:" } " Doppelklick auf die Datei → „Aktueller Benutzer“ → Weiter → Passwort eingeben → „Alle Zertifikate in folgendem Speicher speichern“ → „Eigene Zertifikate“ → Fertig stellen. Danach den Browser neu starten." }
            li { strong { "macOS:" } " Doppelklick auf die Datei → Schlüsselbund „Anmeldung“ → Passwort eingeben. Danach den Browser neu starten." }
            li { strong { "Firefox:" } " Einstellungen → Datenschutz & Sicherheit → Zertifikate anzeigen → Ihre Zertifikate → Importieren → Datei wählen → Passwort eingeben." }
            li { "Diese Seite neu laden. Der Browser fragt, welches Zertifikat er zeigen soll: wählen Sie das von schein." }
        }
    }
}

fn import_steps_en() -> Markup {
    html! {
        ol {
            li { "Your clearing office gave you a certificate file (ending in " code { ".p12" } ") and a password for it." }
            li { strong { "Windows:" } " double-click the file → “Current User” → Next → enter the password → “Place all certificates in the following store” → “Personal” → Finish. Then restart the browser." }
            li { strong { "macOS:" } " double-click the file → keychain “login” → enter the password. Then restart the browser." }
            li { strong { "Firefox:" } " Settings → Privacy & Security → View Certificates → Your Certificates → Import → choose the file → enter the password." }
            li { "Reload this page. The browser asks which certificate to show: choose the one from schein." }
        }
    }
}

/// The page for a visitor without a usable certificate (`refusal`: why the one shown was not
/// accepted). Status 401: nothing is served without one.
pub(super) fn no_certificate(lang: Lang, refusal: Option<&str>) -> Response {
    let body = html! {
        @if let Some(reason) = refusal {
            div.answer.bad role="alert" {
                p { strong { "Ihr Zertifikat wird hier nicht angenommen." } " " span lang="en" { "Your certificate is not accepted here." } }
                p.reason lang="en" { (reason) }
            }
        }
        section lang="de" {
            h2 { "Anmelden mit Ihrem Zertifikat" }
            p.lead { "Um schein zu nutzen, braucht Ihr Browser das Zertifikat, das Ihre Clearingstelle für Sie ausgestellt hat. Ein Passwort oder Benutzerkonto gibt es nicht." }
            (import_steps_de())
        }
        section lang="en" {
            h2 { "Sign in with your certificate" }
            p.lead { "To use schein, your browser needs the certificate your clearing office made for you. There is no password login and no user account." }
            (import_steps_en())
        }
    };
    let title = lang.t(
        "Zertifikat benötigt / Certificate needed",
        "Certificate needed / Zertifikat benötigt",
    );
    page::respond(
        lang,
        StatusCode::UNAUTHORIZED,
        page::frame(lang, title, None, "", body),
    )
}

/// The page for a signed-in person who asked for something their role does not do.
pub(super) fn not_for_you(lang: Lang, reason: &str) -> Response {
    let body = html! {
        div.answer.bad role="alert" {
            p.big { (lang.t("NICHT FÜR SIE", "NOT FOR YOU")) }
            p { (lang.t(
                "Diese Seite gehört zu einer anderen Rolle oder einer anderen Stadt.",
                "This page belongs to another role or another city."
            )) }
            p.reason lang="en" { (reason) }
        }
        p { a href="/" { (lang.t("Zu Ihrer Startseite", "To your start page")) } }
    };
    page::respond(
        lang,
        StatusCode::FORBIDDEN,
        page::frame(lang, lang.t("Nicht für Sie", "Not for you"), None, "", body),
    )
}
