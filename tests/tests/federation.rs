//! Cross-city verification over real mTLS: what a provider sees for genuine, tampered, forged,
//! expired, unknown-issuer, unknown and revoked vouchers, and when the issuer is down.

use ed25519_dalek::SigningKey;
use schein_proto::v1::{
    InvalidReason as R, RevocationReason, RevokeVoucherRequest, Scope, Verdict,
    VerifyVoucherRequest,
};
use schein_proto::voucher::new_body;
use schein_proto::{Day, FullCode, Serial, ShortCode, SignedVoucher};
use schein_tests::{Saxony, assert_verdict, issue, verify};

/// A full code for a voucher signed by `key` with the given issuer and validity.
fn signed_code(issuer: &str, key: &SigningKey, from: Day, until: Day) -> String {
    let body = new_body(
        issuer,
        Serial::random(),
        &key.verifying_key(),
        from,
        until,
        &[],
        Some(50_000),
    );
    FullCode(SignedVoucher::sign(&body, key)).to_string()
}

/// The short code with its sixth character changed to another symbol.
fn mistype(short_code: &str) -> String {
    let mut chars: Vec<char> = short_code.chars().collect();
    chars[5] = if chars[5] == '7' { '8' } else { '7' };
    chars.into_iter().collect()
}

fn days_from_today(days: i32) -> Day {
    Day::today().checked_add_days(days).expect("a day in range")
}

#[tokio::test]
async fn a_voucher_of_one_city_verifies_in_every_city() {
    let saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut office, &[Scope::Medication]).await.unwrap();
    assert!(voucher.short_code.starts_with("LEJ-"));
    assert_eq!(voucher.cap_cents, Some(50_000), "default cap is EUR 500");
    assert_eq!(
        Day::from(voucher.valid_until.unwrap()),
        Day::today().end_of_quarter().unwrap(),
        "default validity ends with the quarter"
    );

    for (city, practice) in [
        ("dresden", "praxis-a"),
        ("chemnitz", "praxis-b"),
        ("leipzig", "praxis-c"),
    ] {
        let mut provider = saxony.provider(city, practice).await.unwrap();
        for code in [
            &voucher.full_code,
            &voucher.short_code,
            &voucher.short_code.to_lowercase(),
        ] {
            let answer = verify(&mut provider, code).await.unwrap();
            assert_verdict(&answer, Verdict::Valid, R::Unspecified);
            let facts = answer.voucher.unwrap();
            assert_eq!(facts.issuer, "leipzig");
            assert_eq!(facts.short_code, voucher.short_code);
            assert_eq!(facts.remaining_cap_cents, Some(50_000));
        }
        let for_medication = provider
            .verify_voucher(VerifyVoucherRequest {
                code: voucher.short_code.clone(),
                for_scope: Scope::Medication as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_verdict(&for_medication, Verdict::Valid, R::Unspecified);
        let for_dental = provider
            .verify_voucher(VerifyVoucherRequest {
                code: voucher.short_code.clone(),
                for_scope: Scope::Dental as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_verdict(&for_dental, Verdict::Invalid, R::OutOfScope);
    }
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_vouchers_are_rejected_with_the_right_reason() {
    let saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    let genuine = issue(&mut office, &[]).await.unwrap();
    let leipzig_key = saxony.signing_key("leipzig").unwrap();
    let forger = SigningKey::from_bytes(&[42; 32]);
    let today = Day::today();

    // Tampered: one character of the signature changed.
    let mut tampered: Vec<char> = genuine.full_code.chars().collect();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == 'Q' { 'R' } else { 'Q' };
    let tampered: String = tampered.into_iter().collect();

    // Forged: Leipzig's name and key id, another key's signature.
    let mut body = new_body(
        "leipzig",
        Serial::random(),
        &leipzig_key.verifying_key(),
        today,
        today,
        &[],
        None,
    );
    body.cap_cents = Some(1_000_000);
    let forged_same_key_id = FullCode(SignedVoucher::sign(&body, &forger)).to_string();

    let cases = [
        (tampered, R::BadSignature),
        (forged_same_key_id, R::BadSignature),
        (signed_code("leipzig", &forger, today, today), R::UnknownKey),
        (
            signed_code("hamburg", &forger, today, today),
            R::UnknownIssuer,
        ),
        (
            signed_code(
                "leipzig",
                &leipzig_key,
                days_from_today(-30),
                days_from_today(-2),
            ),
            R::Expired,
        ),
        (
            signed_code(
                "leipzig",
                &leipzig_key,
                days_from_today(2),
                days_from_today(40),
            ),
            R::NotYetValid,
        ),
        // Genuine signature, but Leipzig never issued (stored) it.
        (
            signed_code("leipzig", &leipzig_key, today, today),
            R::UnknownVoucher,
        ),
        (
            ShortCode::new("LEJ", Serial::random()).unwrap().to_string(),
            R::UnknownVoucher,
        ),
        (
            ShortCode::new("HH", Serial::random()).unwrap().to_string(),
            R::UnknownIssuer,
        ),
        (mistype(&genuine.short_code), R::CheckCharacter),
        ("SCHEIN:not-base32!".to_owned(), R::Malformed),
        ("hello".to_owned(), R::Malformed),
        (String::new(), R::Malformed),
    ];
    for (code, reason) in cases {
        let answer = verify(&mut provider, &code).await.unwrap();
        assert_verdict(&answer, Verdict::Invalid, reason);
    }

    // A voucher valid for longer than a year is refused even with the genuine key.
    let too_long = signed_code("leipzig", &leipzig_key, today, days_from_today(400));
    assert_verdict(
        &verify(&mut provider, &too_long).await.unwrap(),
        Verdict::Invalid,
        R::Malformed,
    );

    // A leaked key re-signing a real serial with a bigger cap: the issuer's bytes differ.
    let real = match schein_proto::VoucherCode::parse(&genuine.full_code).unwrap() {
        schein_proto::VoucherCode::Full(full) => {
            full.0.verify(&leipzig_key.verifying_key()).unwrap()
        }
        other => panic!("not a full code: {other:?}"),
    };
    let mut inflated = new_body(
        "leipzig",
        real.serial,
        &leipzig_key.verifying_key(),
        real.valid_from,
        real.valid_until,
        &[Scope::Dental],
        Some(5_000_000),
    );
    inflated.cap_cents = Some(5_000_000);
    let inflated = FullCode(SignedVoucher::sign(&inflated, &leipzig_key)).to_string();
    assert_verdict(
        &verify(&mut provider, &inflated).await.unwrap(),
        Verdict::Invalid,
        R::BadSignature,
    );

    // Revoked: before, valid; after, rejected from every city.
    let answer = verify(&mut provider, &genuine.full_code).await.unwrap();
    assert_verdict(&answer, Verdict::Valid, R::Unspecified);
    office
        .revoke_voucher(RevokeVoucherRequest {
            code: genuine.short_code.clone(),
            reason: RevocationReason::Stolen as i32,
        })
        .await
        .unwrap();
    for code in [&genuine.full_code, &genuine.short_code] {
        let answer = verify(&mut provider, code).await.unwrap();
        assert_verdict(&answer, Verdict::Invalid, R::Revoked);
    }
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_issuer_is_never_a_silent_yes() {
    let mut saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut office, &[]).await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    assert_verdict(
        &verify(&mut provider, &voucher.full_code).await.unwrap(),
        Verdict::Valid,
        R::Unspecified,
    );

    saxony.federation.stop("leipzig").await.unwrap();
    let full = verify(&mut provider, &voucher.full_code).await.unwrap();
    assert_verdict(&full, Verdict::StatusUnknown, R::Unspecified);
    assert!(
        full.message.contains("could not be reached"),
        "{}",
        full.message
    );
    let short = verify(&mut provider, &voucher.short_code).await.unwrap();
    assert_verdict(&short, Verdict::IssuerUnreachable, R::Unspecified);
    // A bad signature is still caught while the issuer is away.
    let forged = signed_code(
        "leipzig",
        &SigningKey::from_bytes(&[9; 32]),
        Day::today(),
        Day::today(),
    );
    assert_verdict(
        &verify(&mut provider, &forged).await.unwrap(),
        Verdict::Invalid,
        R::UnknownKey,
    );

    saxony.federation.restart("leipzig").await.unwrap();
    assert_verdict(
        &verify(&mut provider, &voucher.short_code).await.unwrap(),
        Verdict::Valid,
        R::Unspecified,
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_member_taken_off_the_roster_is_cut_off_at_once() {
    let saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut office, &[]).await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    // Dresden's node now holds an open connection to Leipzig's.
    assert_verdict(
        &verify(&mut provider, &voucher.short_code).await.unwrap(),
        Verdict::Valid,
        R::Unspecified,
    );

    let leipzig_roster = saxony
        .federation
        .node("leipzig")
        .unwrap()
        .config()
        .unwrap()
        .roster;
    let without_dresden = leipzig_roster.without("dresden").unwrap().unwrap();
    saxony
        .federation
        .replace_roster("leipzig", without_dresden)
        .unwrap();

    // Leipzig no longer answers Dresden, even on the open connection; Dresden says so.
    let answer = verify(&mut provider, &voucher.short_code).await.unwrap();
    assert_verdict(&answer, Verdict::IssuerUnreachable, R::Unspecified);
    // Chemnitz is still a member and is still answered.
    let mut chemnitz = saxony.provider("chemnitz", "praxis").await.unwrap();
    assert_verdict(
        &verify(&mut chemnitz, &voucher.short_code).await.unwrap(),
        Verdict::Valid,
        R::Unspecified,
    );
    saxony.shutdown().await.unwrap();
}

/// The batch check gives every voucher the answer a single check gives, in the order asked,
/// also when one of the issuers is down; and it refuses empty and oversized batches.
#[tokio::test]
async fn a_batch_check_answers_each_voucher_as_a_single_check_would() {
    use schein_proto::v1::{Verification, VerifyVouchersRequest};

    let mut saxony = Saxony::start().await.unwrap();
    let mut leipzig_office = saxony.office("leipzig").await.unwrap();
    let mut chemnitz_office = saxony.office("chemnitz").await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    let mut dresden_office = saxony.office("dresden").await.unwrap();

    let leipzig = issue(&mut leipzig_office, &[]).await.unwrap();
    let leipzig_dental = issue(&mut leipzig_office, &[Scope::Dental]).await.unwrap();
    let revoked = issue(&mut leipzig_office, &[]).await.unwrap();
    leipzig_office
        .revoke_voucher(RevokeVoucherRequest {
            code: revoked.short_code.clone(),
            reason: RevocationReason::Lost as i32,
        })
        .await
        .unwrap();
    let chemnitz = issue(&mut chemnitz_office, &[]).await.unwrap();
    let dresden = issue(&mut dresden_office, &[]).await.unwrap();
    let codes = vec![
        leipzig.full_code.clone(),
        leipzig.short_code.clone(),
        leipzig_dental.full_code.clone(),
        revoked.full_code.clone(),
        chemnitz.short_code.clone(),
        dresden.full_code.clone(),
        mistype(&chemnitz.short_code),
        "not a voucher".to_owned(),
        // Signed with a key Leipzig never listed.
        signed_code(
            "leipzig",
            &SigningKey::from_bytes(&[42; 32]),
            Day::today(),
            days_from_today(30),
        ),
        // The same voucher twice: both answered.
        leipzig.full_code.clone(),
    ];
    let batch = |codes: &[String]| VerifyVouchersRequest {
        vouchers: codes
            .iter()
            .map(|code| VerifyVoucherRequest {
                code: code.clone(),
                for_scope: Scope::Unspecified as i32,
            })
            .collect(),
    };
    async fn singles(
        provider: &mut schein_proto::v1::provider_client::ProviderClient<tonic::transport::Channel>,
        codes: &[String],
    ) -> Vec<Verification> {
        let mut answers = Vec::new();
        for code in codes {
            answers.push(verify(provider, code).await.unwrap());
        }
        answers
    }

    let answers = provider
        .verify_vouchers(batch(&codes))
        .await
        .unwrap()
        .into_inner()
        .verifications;
    assert_eq!(answers, singles(&mut provider, &codes).await);
    let verdicts: Vec<_> = answers.iter().map(|a| (a.verdict(), a.reason())).collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::Valid, R::Unspecified),
            (Verdict::Valid, R::Unspecified),
            (Verdict::Valid, R::Unspecified),
            (Verdict::Invalid, R::Revoked),
            (Verdict::Valid, R::Unspecified),
            (Verdict::Valid, R::Unspecified),
            (Verdict::Invalid, R::CheckCharacter),
            (Verdict::Invalid, R::Malformed),
            (Verdict::Invalid, R::UnknownKey),
            (Verdict::Valid, R::Unspecified),
        ]
    );

    // Leipzig down: its vouchers are never a silent yes, the others are still answered.
    saxony.federation.stop("leipzig").await.unwrap();
    let answers = provider
        .verify_vouchers(batch(&codes))
        .await
        .unwrap()
        .into_inner()
        .verifications;
    assert_eq!(answers, singles(&mut provider, &codes).await);
    assert_eq!(answers[0].verdict(), Verdict::StatusUnknown);
    assert_eq!(answers[1].verdict(), Verdict::IssuerUnreachable);
    assert_eq!(answers[4].verdict(), Verdict::Valid);
    saxony.federation.restart("leipzig").await.unwrap();

    for size in [0, 257] {
        let status = provider
            .verify_vouchers(batch(&vec![leipzig.full_code.clone(); size]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("256"), "{status:?}");
    }
    saxony.shutdown().await.unwrap();
}
