//! Placeholder until the printable voucher card lands.

use maud::{Markup, html};
use schein_proto::Day;

#[derive(Debug)]
pub struct Card<'a> {
    pub short_code: &'a str,
    pub full_code: &'a str,
    pub office: &'a str,
    pub valid_from: Day,
    pub valid_until: Day,
    pub covers: Vec<String>,
    pub cap: Option<String>,
    pub emergency_for: Option<&'a str>,
}

pub fn card(card: &Card<'_>) -> Markup {
    html! { section.voucher-card { p { (card.office) } p { (card.short_code) } p { (card.full_code) } p { (card.valid_from.to_string()) (card.valid_until.to_string()) (card.covers.join(", ")) (card.cap.clone().unwrap_or_default()) (card.emergency_for.unwrap_or_default()) } } }
}
