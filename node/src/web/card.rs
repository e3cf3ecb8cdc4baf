//! The printable voucher card: what the clearing office hands to the person it issued a voucher
//! for.
//!
//! One `<section class="voucher-card">` with the full code as a QR code (what a provider scans),
//! the short code in groups (what a person reads aloud or types), the office, validity, what
//! the voucher covers and its cap, and a short text for the holder in eight languages. The card
//! names nobody: it carries only what the voucher itself says. Its stylesheet,
//! `node/assets/card.css` ([`STYLESHEET`]), prints it alone on one A6 page.

use maud::{Markup, PreEscaped, html};
use qrcode::{EcLevel, QrCode};
use schein_proto::Day;

use super::holder_text::{HOLDER_TEXTS, valid_until_label};

/// The card's stylesheet (screen and print), for the console to serve as a file: the console's
/// CSP allows no inline styles.
pub const STYLESHEET: &str = include_str!("../../assets/card.css");

/// What one printed card shows. The caller formats what depends on its own wording (scope
/// labels, money); the card formats dates and codes.
#[derive(Debug, Clone)]
pub struct Card<'a> {
    /// E.g. `LEJ-7KQ4-M2XD-9FTR-WB3H-Q`.
    pub short_code: &'a str,
    /// `SCHEIN:…`, printed only as the QR code.
    pub full_code: &'a str,
    /// The issuing office, e.g. "Clearingstelle Leipzig".
    pub office: &'a str,
    pub valid_from: Day,
    pub valid_until: Day,
    /// What the voucher covers, German labels.
    pub covers: Vec<String>,
    /// The treatment cap, formatted (e.g. "500,00 €"); `None`: no cap.
    pub cap: Option<String>,
    /// The one provider an emergency voucher is for; `None` for an ordinary voucher.
    pub emergency_for: Option<&'a str>,
}

/// The card's HTML: a section to place in a page that links [`STYLESHEET`].
pub fn card(card: &Card<'_>) -> Markup {
    let until = german_date(card.valid_until);
    html! {
        section.voucher-card lang="de" aria-label="Anonymer Behandlungsschein" {
            p.vc-title {
                "Anonymer Behandlungsschein "
                span.vc-gloss lang="en" { "anonymous treatment voucher" }
            }
            @if let Some(provider) = card.emergency_for {
                p.vc-emergency {
                    "Notfall-Gutschein, nur für " strong { (provider) }
                    " "
                    span.vc-gloss lang="en" { "emergency voucher, only for this provider" }
                }
            }
            div.vc-main {
                div.vc-qr { (qr_svg(card.full_code)) }
                div.vc-facts {
                    p.vc-office { (card.office) }
                    p.vc-label { "Code" }
                    // Spaces between the groups: a copied code still reads as one (the short
                    // code parser skips them), and a screen reader reads the groups apart.
                    p.vc-code translate="no" {
                        @for (i, group) in card.short_code.split('-').enumerate() {
                            @if i > 0 { " " }
                            span { (group) }
                        }
                    }
                    dl.vc-details {
                        div {
                            dt { "Gültig " span.vc-gloss lang="en" { "valid" } }
                            dd.vc-strong { (german_date(card.valid_from)) " – " (until) }
                        }
                        @if !card.covers.is_empty() {
                            div {
                                dt { "Umfang " span.vc-gloss lang="en" { "covers" } }
                                dd { (card.covers.join(", ")) }
                            }
                        }
                        div {
                            dt { "Höchstbetrag " span.vc-gloss lang="en" { "cap" } }
                            dd.vc-strong {
                                @match &card.cap {
                                    Some(cap) => (cap),
                                    None => { "keiner " span.vc-gloss lang="en" { "none" } },
                                }
                            }
                        }
                    }
                }
            }
            div.vc-holder {
                @for text in &HOLDER_TEXTS {
                    div.vc-text lang=(text.lang) dir=(if text.rtl { "rtl" } else { "ltr" }) {
                        p { (text.text) }
                        p.vc-text-until {
                            (valid_until_label(text.lang)) " " bdi dir="ltr" { (until) }
                        }
                    }
                }
            }
        }
    }
}

/// A day as Germans write it: `30.11.2026`.
pub fn german_date(day: Day) -> String {
    match day.to_date() {
        Some(date) => format!(
            "{:02}.{:02}.{:04}",
            date.day(),
            u8::from(date.month()),
            date.year()
        ),
        None => day.to_string(),
    }
}

/// The QR code of `full_code` as inline SVG. Level M, as the CLI's `--qr` card: a full code of
/// a couple of hundred characters stays around version 9 (53 modules), whose modules are still
/// half a millimetre at 32 mm, and it survives a scuffed corner. The viewBox counts modules (4
/// of them quiet zone on each side); the stylesheet gives the size.
fn qr_svg(full_code: &str) -> Markup {
    let Ok(code) = QrCode::with_error_correction_level(full_code.as_bytes(), EcLevel::M) else {
        // Only a code far longer than any voucher's could fail; the short code still works.
        return html! {
            p.vc-qr-missing { "QR-Code nicht möglich " span.vc-gloss lang="en" { "no QR code" } }
        };
    };
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .module_dimensions(1, 1)
        .quiet_zone(true)
        .build();
    // The renderer writes a standalone file; inside HTML the XML declaration has no place.
    let svg = svg.find("<svg").map_or(svg.as_str(), |start| &svg[start..]);
    let svg = svg.replacen(
        "<svg ",
        r#"<svg class="vc-qr-code" role="img" aria-label="QR-Code des Gutscheins" "#,
        1,
    );
    // The renderer's own output: digits, fixed attribute text and path commands, nothing of
    // the caller's (the full code is only in the modules).
    PreEscaped(svg)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use schein_proto::code::{FullCode, ShortCode};
    use schein_proto::v1::Scope;
    use schein_proto::voucher::{SERIAL_LEN, Serial, SignedVoucher, new_body};

    use super::*;

    /// The longest kind of voucher: emergency, every scope, a cap, a long provider name.
    fn sample_codes() -> (String, String) {
        let key = SigningKey::from_bytes(&[9; 32]);
        let serial = Serial::from_bytes([0x5a; SERIAL_LEN]);
        let mut body = new_body(
            "leipzig",
            serial,
            &key.verifying_key(),
            Day::parse("2026-10-01").unwrap(),
            Day::parse("2026-11-30").unwrap(),
            &[
                Scope::Medication,
                Scope::PregnancyCare,
                Scope::SpecialistReferral,
                Scope::Dental,
            ],
            Some(50_000),
        );
        body.emergency = true;
        body.bound_provider = "leipzig/klinikum-sued-notaufnahme".to_owned();
        let full = FullCode(SignedVoucher::sign(&body, &key)).to_string();
        let short = ShortCode::new("LEJ", serial).unwrap().to_string();
        (short, full)
    }

    fn sample<'a>(short: &'a str, full: &'a str) -> Card<'a> {
        Card {
            short_code: short,
            full_code: full,
            office: "Clearingstelle Leipzig",
            valid_from: Day::parse("2026-10-01").unwrap(),
            valid_until: Day::parse("2026-11-30").unwrap(),
            covers: vec![
                "Ambulante Grundversorgung".to_owned(),
                "Medikamente".to_owned(),
                "Schwangerschaftsvorsorge".to_owned(),
            ],
            cap: Some("500,00 €".to_owned()),
            emergency_for: None,
        }
    }

    /// Draws the SVG's path (`M x y h w v h H x V y` per dark rectangle, in modules) into a
    /// bitmap at `scale` pixels per module.
    fn rasterize(svg: &str, scale: usize) -> (usize, Vec<bool>) {
        let view_box = svg.split("viewBox=\"0 0 ").nth(1).unwrap();
        let size: usize = view_box.split(' ').next().unwrap().parse().unwrap();
        let path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let px = size * scale;
        let mut bitmap = vec![false; px * px];
        for rect in path.split('M').filter(|r| !r.is_empty()) {
            let numbers: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect();
            let [left, top, width, height, ..] = numbers[..] else {
                panic!("unexpected path segment {rect:?}");
            };
            for y in top * scale..(top + height) * scale {
                for x in left * scale..(left + width) * scale {
                    bitmap[y * px + x] = true;
                }
            }
        }
        (px, bitmap)
    }

    /// The QR code in the card's markup, found and read the way a scanner does: finder
    /// patterns located in a picture (which needs the quiet zone), then decoded.
    #[test]
    fn qr_code_in_the_markup_reads_back_as_the_full_code() {
        let (short, full) = sample_codes();
        let html = card(&sample(&short, &full)).into_string();
        let svg = html
            .split("<svg")
            .nth(1)
            .and_then(|s| s.split("</svg>").next())
            .expect("an inline svg");
        let (px, bitmap) = rasterize(svg, 4);
        let mut image = rqrr::PreparedImage::prepare_from_bitmap(px, px, |x, y| bitmap[y * px + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        let (meta, content) = grids[0].decode().unwrap();
        assert_eq!(content, full);
        // The format's two error correction bits: M is 0b00 (L 0b01, H 0b10, Q 0b11).
        assert_eq!(meta.ecc_level, 0, "error correction M");
        println!("{} characters, version {}", full.len(), meta.version.0);
        // Small enough for its modules to stay scannable at 34 mm (4 quiet modules a side).
        assert!(meta.version.0 <= 12, "version {}", meta.version.0);
        assert!(!html.contains("<?xml"));
    }

    #[test]
    fn shows_every_group_of_the_short_code_and_german_dates() {
        let (short, full) = sample_codes();
        let html = card(&sample(&short, &full)).into_string();
        for group in short.split('-') {
            assert!(html.contains(&format!("<span>{group}</span>")), "{group}");
        }
        assert!(html.contains("01.10.2026 – 30.11.2026"));
        assert!(html.contains("Clearingstelle Leipzig"));
        assert!(html.contains("500,00 €"));
        assert!(html.contains("Ambulante Grundversorgung, Medikamente, Schwangerschaftsvorsorge"));
        assert!(!html.contains("Notfall"));
        assert!(html.starts_with("<section class=\"voucher-card\""));
    }

    #[test]
    fn holder_texts_carry_language_and_direction() {
        let (short, full) = sample_codes();
        let html = card(&sample(&short, &full)).into_string();
        for text in &HOLDER_TEXTS {
            let dir = if text.rtl { "rtl" } else { "ltr" };
            let opening = format!(r#"<div class="vc-text" lang="{}" dir="{dir}">"#, text.lang);
            assert!(html.contains(&opening), "{opening}");
            assert!(html.contains(valid_until_label(text.lang)));
        }
        assert_eq!(html.matches(r#"dir="rtl""#).count(), 2);
    }

    #[test]
    fn emergency_card_names_its_provider() {
        let (short, full) = sample_codes();
        let card_data = Card {
            emergency_for: Some("Klinikum Süd, Notaufnahme"),
            cap: None,
            ..sample(&short, &full)
        };
        let html = card(&card_data).into_string();
        assert!(html.contains("Notfall-Gutschein, nur für <strong>Klinikum Süd, Notaufnahme"));
        assert!(html.contains("keiner"));
    }

    #[test]
    fn escapes_what_the_caller_passes() {
        let (short, full) = sample_codes();
        let hostile = "<script>alert(1)</script>";
        let covers = vec![hostile.to_owned()];
        let card_data = Card {
            office: hostile,
            short_code: "LEJ-<img src=x onerror=alert(1)>-Q",
            covers,
            cap: Some(hostile.to_owned()),
            emergency_for: Some("\"><script>x</script>"),
            ..sample(&short, &full)
        };
        let html = card(&card_data).into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn a_code_too_long_for_a_qr_code_still_makes_a_card() {
        let full = "A".repeat(5_000);
        let html = card(&sample("LEJ-7KQ4-M2XD-9FTR-WB3H-Q", &full)).into_string();
        assert!(!html.contains("<svg"));
        assert!(html.contains("QR-Code nicht möglich"));
    }

    /// What the page relies on when it prints: only the card, on A6 (checked by eye in
    /// Chromium: one page, also for the fullest emergency card).
    #[test]
    fn stylesheet_prints_the_card_alone_on_a6() {
        assert!(STYLESHEET.contains("@page voucher-card {\n  size: 105mm 148mm;"));
        assert!(STYLESHEET.contains("page: voucher-card;"));
        let print = STYLESHEET.split("@media print {").nth(1).unwrap();
        assert!(print.contains(".no-print {\n    display: none !important;"));
        assert!(print.contains("width: 32mm;"), "QR code at least 30 mm");
    }

    #[test]
    fn german_dates_have_two_digit_days_and_months() {
        assert_eq!(german_date(Day::parse("2026-03-05").unwrap()), "05.03.2026");
        assert_eq!(german_date(Day::parse("2026-11-30").unwrap()), "30.11.2026");
    }

    /// Writes a standalone page with the card and its stylesheet to look at in a browser and
    /// print: `cargo test -p schein-node web::card -- --ignored`, then open
    /// `$TMPDIR/card-preview.html` (the console itself serves the stylesheet as a file).
    #[test]
    #[ignore = "writes a preview file"]
    fn write_preview() {
        let (short, full) = sample_codes();
        let emergency = std::env::var_os("CARD_PREVIEW_EMERGENCY").is_some();
        let mut card_data = sample(&short, &full);
        if emergency {
            // The fullest card: every scope, and a long provider name.
            card_data.emergency_for = Some("Klinikum St. Georg, Zentrale Notaufnahme");
            card_data.covers.extend([
                "Facharzt-Überweisung".to_owned(),
                "Zahnbehandlung".to_owned(),
            ]);
        }
        let page = html! {
            (maud::DOCTYPE)
            html lang="de" {
                head {
                    meta charset="utf-8";
                    title { "Gutschein drucken" }
                    style { (PreEscaped(STYLESHEET)) }
                }
                body {
                    header { "schein · Clearingstelle Leipzig" }
                    nav { a href="#" { "Gutscheine" } }
                    main {
                        h1.no-print { "Gutschein ausgegeben" }
                        p.no-print { "Drucken Sie die Karte und geben Sie sie weiter." }
                        (card(&card_data))
                    }
                    footer { "schein" }
                }
            }
        };
        let path = std::env::temp_dir().join("card-preview.html");
        std::fs::write(&path, page.into_string()).unwrap();
        println!("{}", path.display());
    }
}
