//! What the printed voucher card tells the person who holds it, in the languages people who
//! come to a clearing office most often read: German first, then English, Arabic, Farsi,
//! Russian, Ukrainian, Turkish and French.
//!
//! Every text says the same thing in plain words: the card opens the door to a doctor, a
//! hospital or a pharmacy without paying, it is shown at the reception, nobody asks for a name
//! or papers, and whoever has the card can use it. The card adds "valid until" and the date
//! itself ([`valid_until_label`]), so the texts stay free of data.

/// The holder's text in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderText {
    /// BCP 47 language tag, for the element's `lang` attribute.
    pub lang: &'static str,
    /// Written right to left (Arabic, Farsi): the element gets `dir="rtl"`.
    pub rtl: bool,
    pub text: &'static str,
}

/// The holder's texts, German (the card's main language) first.
pub const HOLDER_TEXTS: [HolderText; 8] = [
    HolderText {
        lang: "de",
        rtl: false,
        text: "Mit dieser Karte können Sie kostenlos zum Arzt, ins Krankenhaus oder in die \
               Apotheke gehen (für das, was die Karte abdeckt). Zeigen Sie die Karte an der \
               Anmeldung. Name und Papiere sind nicht nötig. Passen Sie gut auf die Karte auf: \
               Wer sie hat, kann sie benutzen.",
    },
    HolderText {
        lang: "en",
        rtl: false,
        text: "With this card you can go to a doctor, a hospital or a pharmacy without paying \
               (for what the card covers). Show the card at the reception. No name and no papers \
               are needed. Keep the card safe: anyone who has it can use it.",
    },
    HolderText {
        lang: "ar",
        rtl: true,
        text: "بهذه البطاقة يمكنك الذهاب إلى الطبيب أو المستشفى أو الصيدلية دون أن تدفع (في حدود \
               ما تغطيه البطاقة). اعرض البطاقة عند الاستقبال. لا حاجة إلى اسم أو أوراق. احفظ \
               البطاقة جيدًا: من يحملها يستطيع استخدامها.",
    },
    HolderText {
        lang: "fa",
        rtl: true,
        text: "با این کارت می\u{200c}توانید بدون پرداخت پول به پزشک، بیمارستان یا داروخانه بروید \
               (در حد آنچه کارت پوشش می\u{200c}دهد). کارت را در پذیرش نشان دهید. به نام و مدرک \
               نیازی نیست. از کارت خوب مراقبت کنید: هر کسی که آن را داشته باشد، می\u{200c}تواند \
               از آن استفاده کند.",
    },
    HolderText {
        lang: "ru",
        rtl: false,
        text: "С этой картой вы можете бесплатно обратиться к врачу, в больницу или в аптеку \
               (если карта это покрывает). Покажите карту в регистратуре. Имя и документы не \
               нужны. Берегите карту: ею может воспользоваться любой, у кого она есть.",
    },
    HolderText {
        lang: "uk",
        rtl: false,
        text: "З цією карткою ви можете безкоштовно звернутися до лікаря, до лікарні або в аптеку \
               (якщо картка це покриває). Покажіть картку в реєстратурі. Ім\u{2019}я та документи \
               не потрібні. Бережіть картку: нею може скористатися будь-хто, у кого вона є.",
    },
    HolderText {
        lang: "tr",
        rtl: false,
        text: "Bu kartla para ödemeden doktora, hastaneye veya eczaneye gidebilirsiniz (kartın \
               kapsadığı hizmetler için). Kartı kayıt yaptırırken gösterin. İsim veya belge \
               gerekmez. Kartı iyi koruyun: Kart kimin elindeyse o kullanabilir.",
    },
    HolderText {
        lang: "fr",
        rtl: false,
        text: "Avec cette carte, vous pouvez aller chez le médecin, à l\u{2019}hôpital ou à la \
               pharmacie sans payer (pour ce que couvre la carte). Montrez la carte à \
               l\u{2019}accueil. On ne vous demande ni nom ni papiers. Gardez bien cette \
               carte\u{a0}: toute personne qui l\u{2019}a peut l\u{2019}utiliser.",
    },
];

/// "Valid until" in the holder's language, to stand before the date. An unknown language tag
/// gets the German label, the card's main language.
pub fn valid_until_label(lang: &str) -> &'static str {
    match lang {
        "en" => "Valid until",
        "ar" => "صالحة حتى",
        "fa" => "معتبر تا",
        "ru" => "Действительна до",
        "uk" => "Дійсна до",
        "tr" => "Son geçerlilik tarihi",
        "fr" => "Valable jusqu\u{2019}au",
        _ => "Gültig bis",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn eight_languages_german_first_arabic_and_farsi_right_to_left() {
        let langs: Vec<&str> = HOLDER_TEXTS.iter().map(|t| t.lang).collect();
        assert_eq!(langs, ["de", "en", "ar", "fa", "ru", "uk", "tr", "fr"]);
        for text in &HOLDER_TEXTS {
            assert_eq!(text.rtl, matches!(text.lang, "ar" | "fa"), "{}", text.lang);
        }
    }

    #[test]
    fn texts_are_there_and_distinct() {
        let texts: BTreeSet<&str> = HOLDER_TEXTS.iter().map(|t| t.text).collect();
        assert_eq!(texts.len(), HOLDER_TEXTS.len());
        for text in &HOLDER_TEXTS {
            assert!(text.text.trim().len() > 40, "{}", text.lang);
            // A line continuation eats the next line's indentation; a missing space before
            // the backslash would glue two words together.
            assert!(!text.text.contains("  "), "{}: double space", text.lang);
            let glued = text
                .text
                .chars()
                .zip(text.text.chars().skip(1))
                .any(|(a, b)| matches!(a, '.' | ',' | ':' | '،') && b.is_alphabetic());
            assert!(
                !glued,
                "{}: punctuation without a space after it",
                text.lang
            );
        }
    }

    #[test]
    fn every_language_has_its_own_label() {
        let labels: BTreeSet<&str> = HOLDER_TEXTS
            .iter()
            .map(|t| valid_until_label(t.lang))
            .collect();
        assert_eq!(labels.len(), HOLDER_TEXTS.len());
        assert_eq!(valid_until_label("de"), "Gültig bis");
        assert_eq!(valid_until_label("xx"), "Gültig bis");
    }

    /// Farsi is written with its own yeh and keheh; Arabic's look alike but are different
    /// letters, which breaks searching and some fonts' shaping.
    #[test]
    fn farsi_and_arabic_letters_are_not_mixed_up() {
        let text = |lang: &str| {
            HOLDER_TEXTS
                .iter()
                .find(|t| t.lang == lang)
                .map(|t| t.text)
                .unwrap_or_default()
        };
        assert!(!text("fa").contains(['\u{064a}', '\u{0643}']));
        assert!(!text("ar").contains(['\u{06cc}', '\u{06a9}']));
    }
}
