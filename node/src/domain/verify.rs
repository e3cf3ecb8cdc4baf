//! The verify flow (DESIGN.md, flow 2): check a voucher of any member for a provider of this
//! node. The signature, validity window and scope are checked here with the issuer's key from
//! the roster; only the issuer knows whether it was revoked, so it is asked. The answer is valid,
//! invalid with a reason, or "genuine but status unknown" — never a silent yes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use schein_proto::code::{CodeError, VoucherCode};
use schein_proto::v1::{
    InvalidReason, Scope, Verdict, Verification, VoucherFacts, VoucherStatusResponse,
};
use schein_proto::voucher::VerifiedVoucher;
use schein_proto::{Day, Serial, SignedVoucher, VoucherError};

use crate::node::Node;
use crate::pki::Identity;
use crate::roster::{KeyLookupError, Member, Roster};

/// Most vouchers one batch request may carry (`VerifyVouchers`, `VoucherStatuses`).
pub const MAX_BATCH: usize = 256;

/// What the issuer said about a voucher.
#[derive(Clone)]
pub(crate) enum IssuerAnswer {
    Known {
        signed: SignedVoucher,
        revoked_on: Option<Day>,
        remaining_cap_cents: Option<i64>,
        remaining_medication_cents: Option<i64>,
    },
    NotIssued,
    Unreachable,
}

/// A refusal: the reason, a sentence for the provider, and what could be read of the voucher.
struct Refusal(InvalidReason, String, Option<Box<VoucherFacts>>);

fn refusal(reason: InvalidReason, message: impl Into<String>) -> Refusal {
    Refusal(reason, message.into(), None)
}

/// Where the issuers' answers come from: asked per voucher, or fetched for a whole batch.
enum Answers {
    Live,
    Fetched(HashMap<(String, Serial), IssuerAnswer>),
}

impl Answers {
    async fn get(&self, node: &Node, issuer: &Member, serial: Serial) -> IssuerAnswer {
        match self {
            Answers::Live => ask_issuer(node, issuer, serial).await,
            Answers::Fetched(answers) => answers
                .get(&(issuer.id().to_owned(), serial))
                .cloned()
                .unwrap_or(IssuerAnswer::Unreachable),
        }
    }
}

/// Why a request to verify was refused (the vouchers' own answers are verdicts, not errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(String);

impl super::Refusal for VerifyError {
    fn reason(&self) -> schein_proto::v1::ErrorReason {
        schein_proto::v1::ErrorReason::InvalidArgument
    }
}

/// Longest code text accepted; a full code is about 250 characters.
pub const MAX_CODE_LEN: usize = 2048;

/// One code and kind of care of a request, checked for size and a known scope; `which` names it
/// in the message ("" for a single request, " at number 3" in a batch).
fn asked<'r>(
    request: &'r schein_proto::v1::VerifyVoucherRequest,
    which: &str,
) -> Result<(&'r str, Scope), VerifyError> {
    if request.code.len() > MAX_CODE_LEN {
        return Err(VerifyError(format!(
            "the code{which} is far too long to be a voucher code"
        )));
    }
    let scope = Scope::try_from(request.for_scope)
        .map_err(|_| VerifyError(format!("unknown kind of care (for_scope){which}")))?;
    Ok((request.code.as_str(), scope))
}

/// A provider's request to verify one voucher.
pub async fn verify_request(
    node: &Node,
    provider: &Identity,
    request: &schein_proto::v1::VerifyVoucherRequest,
) -> Result<Verification, VerifyError> {
    let (code, scope) = asked(request, "")?;
    Ok(verify(node, provider, code, scope).await)
}

/// A provider's request to verify up to [`MAX_BATCH`] vouchers.
pub async fn verify_requests(
    node: &Node,
    provider: &Identity,
    request: &schein_proto::v1::VerifyVouchersRequest,
) -> Result<schein_proto::v1::VerifyVouchersResponse, VerifyError> {
    let vouchers = &request.vouchers;
    if !(1..=MAX_BATCH).contains(&vouchers.len()) {
        return Err(VerifyError(format!(
            "send 1 to {MAX_BATCH} vouchers per request, not {}",
            vouchers.len()
        )));
    }
    let asked = vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| asked(v, &format!(" at number {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let verifications = verify_many(node, provider, &asked).await;
    Ok(schein_proto::v1::VerifyVouchersResponse { verifications })
}

/// Verifies `code` (full or short) for `provider`, optionally for one kind of care.
pub async fn verify(
    node: &Node,
    provider: &Identity,
    code: &str,
    for_scope: Scope,
) -> Verification {
    verify_with(node, provider, code, for_scope, &Answers::Live).await
}

/// Verifies several codes, each as [`verify`] would, in the order given; every issuer is asked
/// once about all of its serials (in one `VoucherStatuses` call per [`MAX_BATCH`] serials) and
/// the issuers concurrently, instead of one call per voucher.
pub async fn verify_many(
    node: &Node,
    provider: &Identity,
    requests: &[(&str, Scope)],
) -> Vec<Verification> {
    let roster = node.roster();
    // Which serials to ask which issuer about, read from the codes before anything is checked:
    // a code that cannot be read here fails its own verification below.
    let mut wanted: BTreeMap<String, BTreeSet<Serial>> = BTreeMap::new();
    for (code, _) in requests {
        if let Some((issuer, serial)) = issuer_and_serial(&roster, code) {
            wanted.entry(issuer).or_default().insert(serial);
        }
    }
    let fetches = wanted.into_iter().filter_map(|(issuer, serials)| {
        let member = roster.member(&issuer)?;
        Some(fetch_answers(node, member, serials.into_iter().collect()))
    });
    let answers = futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect();
    let answers = Answers::Fetched(answers);
    let mut verifications = Vec::with_capacity(requests.len());
    for (code, scope) in requests {
        verifications.push(verify_with(node, provider, code, *scope, &answers).await);
    }
    verifications
}

/// The issuer and serial a code names, without checking anything.
fn issuer_and_serial(roster: &Roster, code: &str) -> Option<(String, Serial)> {
    match VoucherCode::parse(code).ok()? {
        VoucherCode::Full(full) => {
            let (issuer, _) = full.0.claimed_key().ok()?;
            Some((issuer, full.0.decode_own().ok()?.serial))
        }
        VoucherCode::Short(short) => Some((
            roster.member_by_prefix(short.prefix())?.id().to_owned(),
            short.serial(),
        )),
    }
}

/// `issuer`'s answers about `serials`: from this node's store, or in batches from the issuer.
async fn fetch_answers(
    node: &Node,
    issuer: &Member,
    serials: Vec<Serial>,
) -> Vec<((String, Serial), IssuerAnswer)> {
    let key = |serial| (issuer.id().to_owned(), serial);
    if issuer.id() == node.id {
        return serials
            .into_iter()
            .map(|serial| (key(serial), own_answer(node, serial)))
            .collect();
    }
    let mut answers = Vec::with_capacity(serials.len());
    for chunk in serials.chunks(MAX_BATCH) {
        match node.peers.voucher_statuses(issuer, chunk).await {
            Ok(statuses) if statuses.len() == chunk.len() => {
                for (serial, status) in chunk.iter().zip(statuses) {
                    answers.push((key(*serial), peer_answer(issuer, Ok(status))));
                }
            }
            Ok(_) => {
                tracing::warn!(
                    issuer = issuer.id(),
                    "issuer answered for other vouchers than asked"
                );
            }
            Err(error) => {
                tracing::warn!(issuer = issuer.id(), %error, "issuer unreachable");
            }
        }
    }
    answers
}

async fn verify_with(
    node: &Node,
    provider: &Identity,
    code: &str,
    for_scope: Scope,
    answers: &Answers,
) -> Verification {
    match verify_inner(node, provider, code, for_scope, answers).await {
        Ok(verification) => verification,
        Err(Refusal(reason, message, facts)) => {
            tracing::info!(reason = reason.as_str_name(), "voucher refused");
            Verification {
                verdict: Verdict::Invalid as i32,
                reason: reason as i32,
                message,
                voucher: facts.map(|f| *f),
            }
        }
    }
}

async fn verify_inner(
    node: &Node,
    provider: &Identity,
    code: &str,
    for_scope: Scope,
    answers: &Answers,
) -> Result<Verification, Refusal> {
    let code = VoucherCode::parse(code).map_err(|e| code_refusal(&e))?;
    let roster = node.roster();
    let (member, voucher, answer) = match code {
        VoucherCode::Full(full) => {
            let (member, voucher) = check_signed(node, &roster, &full.0)?;
            check_window_and_scope(node, provider, member, &voucher, for_scope)?;
            let answer = answers.get(node, member, voucher.serial).await;
            // A stolen or leaked key could sign new content under a real serial: only the
            // bytes the issuer stored are the voucher.
            if let IssuerAnswer::Known { signed, .. } = &answer
                && signed != &full.0
            {
                return Err(refusal(
                    InvalidReason::BadSignature,
                    "This code does not match the voucher its issuing office issued under this serial. Do not accept it, and tell your clearing office.",
                ));
            }
            if let IssuerAnswer::Unreachable = answer {
                tracing::info!(issuer = member.id(), "voucher genuine, issuer unreachable");
                tracing::debug!(tag = %node.log_tag(voucher.serial), "voucher genuine, issuer unreachable");
                return Ok(Verification {
                    verdict: Verdict::StatusUnknown as i32,
                    reason: InvalidReason::Unspecified as i32,
                    message: format!(
                        "The signature is genuine and the voucher is valid until {}, but its issuing office ({}) could not be reached to confirm that it was not revoked. Check again before billing.",
                        voucher.valid_until,
                        member.name()
                    ),
                    voucher: Some(facts(member, &voucher, None)),
                });
            }
            (member, voucher, answer)
        }
        VoucherCode::Short(short) => {
            let member = roster.member_by_prefix(short.prefix()).ok_or_else(|| {
                refusal(
                    InvalidReason::UnknownIssuer,
                    format!(
                        "No clearing office in the network uses the prefix {}. Check the code; if it is right, do not accept the voucher.",
                        short.prefix()
                    ),
                )
            })?;
            let answer = answers.get(node, member, short.serial()).await;
            let signed = match &answer {
                IssuerAnswer::Unreachable => {
                    return Ok(Verification {
                        verdict: Verdict::IssuerUnreachable as i32,
                        reason: InvalidReason::Unspecified as i32,
                        message: format!(
                            "The issuing office ({}) could not be reached, so the short code cannot be checked now. Scan the QR code (full code) to check the voucher, or try again later.",
                            member.name()
                        ),
                        voucher: None,
                    });
                }
                IssuerAnswer::NotIssued => return Err(not_issued(member)),
                IssuerAnswer::Known { signed, .. } => signed,
            };
            let (signer, voucher) = check_signed(node, &roster, signed)?;
            if signer.id() != member.id() || voucher.serial != short.serial() {
                return Err(refusal(
                    InvalidReason::BadSignature,
                    "The issuing office answered with a different voucher. Do not accept it, and tell your clearing office.",
                ));
            }
            check_window_and_scope(node, provider, member, &voucher, for_scope)?;
            (member, voucher, answer)
        }
    };
    match answer {
        IssuerAnswer::Known {
            revoked_on: Some(day),
            ..
        } => Err(Refusal(
            InvalidReason::Revoked,
            format!(
                "This voucher was revoked by its issuing office ({}) on {day}. Do not accept it; a clearing office can issue a new one.",
                member.name()
            ),
            Some(Box::new(facts(member, &voucher, None))),
        )),
        IssuerAnswer::Known {
            remaining_cap_cents,
            remaining_medication_cents,
            ..
        } => {
            let left = remaining_cap_cents
                .map(|c| format!("; {} left under its cap", schein_proto::money::Cents(c)))
                .unwrap_or_default();
            tracing::info!(issuer = member.id(), "voucher valid");
            tracing::debug!(tag = %node.log_tag(voucher.serial), "voucher valid");
            Ok(Verification {
                verdict: Verdict::Valid as i32,
                reason: InvalidReason::Unspecified as i32,
                message: format!(
                    "Valid voucher of {}, valid until {}{left}.",
                    member.name(),
                    voucher.valid_until
                ),
                voucher: Some(VoucherFacts {
                    remaining_medication_cents,
                    ..facts(member, &voucher, remaining_cap_cents)
                }),
            })
        }
        IssuerAnswer::NotIssued | IssuerAnswer::Unreachable => Err(not_issued(member)),
    }
}

fn not_issued(member: &Member) -> Refusal {
    refusal(
        InvalidReason::UnknownVoucher,
        format!(
            "The issuing office ({}) has no record of this voucher. Do not accept it.",
            member.name()
        ),
    )
}

fn code_refusal(error: &CodeError) -> Refusal {
    match error {
        CodeError::CheckCharacter => refusal(
            InvalidReason::CheckCharacter,
            "The code does not add up: probably a typing error. Please check every character, or scan the QR code.",
        ),
        CodeError::Damaged(VoucherError::BadSignature) => refusal(
            InvalidReason::BadSignature,
            "The voucher's signature is not genuine: it was altered or forged. Do not accept it.",
        ),
        other => refusal(
            InvalidReason::Malformed,
            format!(
                "This is not a readable voucher code ({other}). Check for typing errors or scan the QR code again."
            ),
        ),
    }
}

/// Finds the issuer and key in the roster and checks the signature strictly.
fn check_signed<'r>(
    node: &Node,
    roster: &'r Roster,
    signed: &SignedVoucher,
) -> Result<(&'r Member, VerifiedVoucher), Refusal> {
    let checked = check_signed_with(roster, signed);
    if let Err(refusal) = &checked
        && matches!(
            refusal.0,
            InvalidReason::UnknownIssuer | InvalidReason::UnknownKey
        )
    {
        // A member may have rotated its key or joined since this node last asked: ask now, so
        // that the next try finds the new roster.
        node.roster_wanted.notify_one();
    }
    checked
}

fn check_signed_with<'r>(
    roster: &'r Roster,
    signed: &SignedVoucher,
) -> Result<(&'r Member, VerifiedVoucher), Refusal> {
    let (issuer, key_id) = signed.claimed_key().map_err(|e| {
        refusal(
            InvalidReason::Malformed,
            format!("This is not a readable voucher ({e}). Scan the QR code again."),
        )
    })?;
    let member = roster.member(&issuer).ok_or_else(|| {
        refusal(
            InvalidReason::UnknownIssuer,
            "This voucher names an issuer that is not a member of the network. Do not accept it.",
        )
    })?;
    // The key's window is checked against the voucher's first day, which is only known after
    // decoding; so try the key first, then check the window on the verified body.
    let key = member.key(&key_id).map_err(|_| unknown_key(member))?;
    let voucher = signed.verify(&key.public_key).map_err(|e| match e {
        VoucherError::BadSignature => refusal(
            InvalidReason::BadSignature,
            "The voucher's signature is not genuine: it was altered or forged. Do not accept it.",
        ),
        other => refusal(
            InvalidReason::Malformed,
            format!("This is not a readable voucher ({other})."),
        ),
    })?;
    // The key must sign on the day it signed the voucher, and not after a declared compromise.
    match member.key_in_use(&key_id, voucher.issued_on) {
        Ok(_) => Ok((member, voucher)),
        Err(KeyLookupError::Compromised) => Err(refusal(
            InvalidReason::KeyCompromised,
            format!(
                "The voucher was signed with a key that the network declared compromised (stolen) before that day; {} did not issue it. Do not accept it.",
                member.name()
            ),
        )),
        Err(KeyLookupError::UnknownKey | KeyLookupError::OutsideWindow) => Err(unknown_key(member)),
    }
}

fn unknown_key(member: &Member) -> Refusal {
    refusal(
        InvalidReason::UnknownKey,
        format!(
            "The voucher was signed with a key that its issuing office ({}) does not list for that time. Do not accept it.",
            member.name()
        ),
    )
}

fn check_window_and_scope(
    node: &Node,
    provider: &Identity,
    member: &Member,
    voucher: &VerifiedVoucher,
    for_scope: Scope,
) -> Result<(), Refusal> {
    let (earliest_today, latest_today) = node.today_range();
    let with_facts = |reason, message: String| {
        Refusal(
            reason,
            message,
            Some(Box::new(facts(member, voucher, None))),
        )
    };
    if latest_today < voucher.valid_from {
        return Err(with_facts(
            InvalidReason::NotYetValid,
            format!("This voucher is valid only from {}.", voucher.valid_from),
        ));
    }
    if earliest_today > voucher.valid_until {
        return Err(with_facts(
            InvalidReason::Expired,
            format!(
                "This voucher expired on {}. A clearing office can issue a new one.",
                voucher.valid_until
            ),
        ));
    }
    if !voucher.covers(for_scope) {
        return Err(with_facts(
            InvalidReason::OutOfScope,
            format!("This voucher does not cover {}.", scope_words(for_scope)),
        ));
    }
    // Checked from the signed voucher itself, so the answer is the same when the issuer is down.
    if let Some(bound) = &voucher.bound_provider
        && *bound != format!("{}/{}", provider.node, provider.name)
    {
        return Err(with_facts(
            InvalidReason::BoundElsewhere,
            format!(
                "This emergency voucher of {} was issued for {bound} only: it is not valid for you. Do not bill it; the person can ask a clearing office for a voucher.",
                member.name()
            ),
        ));
    }
    Ok(())
}

/// A scope as words for people.
pub fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Unspecified | Scope::Ambulatory => "ambulatory basic care",
        Scope::Medication => "medication",
        Scope::PregnancyCare => "pregnancy care",
        Scope::SpecialistReferral => "referral to a specialist",
        Scope::Dental => "dental care",
    }
}

fn facts(member: &Member, voucher: &VerifiedVoucher, remaining: Option<i64>) -> VoucherFacts {
    let short_code = member
        .entry
        .prefix
        .as_deref()
        .and_then(|p| schein_proto::ShortCode::new(p, voucher.serial).ok())
        .map(|c| c.to_string())
        .unwrap_or_default();
    VoucherFacts {
        issuer: member.id().to_owned(),
        issuer_name: member.name().to_owned(),
        short_code,
        valid_from: Some(voucher.valid_from.into()),
        valid_until: Some(voucher.valid_until.into()),
        scope: voucher.scope.iter().map(|&s| s as i32).collect(),
        cap_cents: voucher.cap_cents,
        remaining_cap_cents: remaining,
        emergency: voucher.emergency,
        bound_provider: voucher.bound_provider.clone().unwrap_or_default(),
        remaining_medication_cents: None,
    }
}

/// Asks the issuer (this node's own store if it is the issuer) about `serial`.
pub(crate) async fn ask_issuer(node: &Node, issuer: &Member, serial: Serial) -> IssuerAnswer {
    if issuer.id() == node.id {
        return own_answer(node, serial);
    }
    peer_answer(issuer, node.peers.voucher_status(issuer, serial).await)
}

/// This node's answer as issuer of `serial`, from its store.
fn own_answer(node: &Node, serial: Serial) -> IssuerAnswer {
    match node.store.voucher(serial) {
        Ok(Some(stored)) => IssuerAnswer::Known {
            remaining_cap_cents: stored.remaining_cap_cents(),
            remaining_medication_cents: stored
                .remaining_medication_cents(node.limits().medication_per_voucher_cents),
            revoked_on: stored.revoked_on,
            signed: stored.signed,
        },
        Ok(None) => IssuerAnswer::NotIssued,
        Err(error) => {
            tracing::error!(%error, "reading the store failed");
            IssuerAnswer::Unreachable
        }
    }
}

/// What another member's status answer (or its failure) means.
fn peer_answer(
    issuer: &Member,
    status: Result<VoucherStatusResponse, crate::peers::PeerError>,
) -> IssuerAnswer {
    match status {
        Ok(status) if !status.known => IssuerAnswer::NotIssued,
        Ok(status) => match SignedVoucher::from_bytes(&status.signed_voucher) {
            Ok(signed) => IssuerAnswer::Known {
                signed,
                // An issuer of an earlier version says only "revoked": take today as the day.
                revoked_on: match (status.revoked_on, status.revoked) {
                    (Some(day), _) => Some(day.into()),
                    (None, true) => Some(Day::today()),
                    (None, false) => None,
                },
                remaining_cap_cents: status.remaining_cap_cents,
                remaining_medication_cents: status.remaining_medication_cents,
            },
            Err(error) => {
                tracing::warn!(issuer = issuer.id(), %error, "issuer sent an unreadable voucher");
                IssuerAnswer::Unreachable
            }
        },
        Err(error) => {
            tracing::warn!(issuer = issuer.id(), %error, "issuer unreachable");
            IssuerAnswer::Unreachable
        }
    }
}

/// What the issuer said of a voucher when it was asked for a claim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IssuerStatus {
    pub(crate) revoked_on: Option<Day>,
    pub(crate) remaining_medication_cents: Option<i64>,
}

/// The issuer's word on `serial` for a claim; `None` if it could not be asked. A voucher it does
/// not know is not revoked; its own decision on the claim will say that it does not know it.
pub(crate) async fn issuer_status(
    node: &Node,
    issuer: &Member,
    serial: Serial,
) -> Option<IssuerStatus> {
    status_of_answer(&ask_issuer(node, issuer, serial).await)
}

fn status_of_answer(answer: &IssuerAnswer) -> Option<IssuerStatus> {
    match answer {
        IssuerAnswer::Known {
            revoked_on,
            remaining_medication_cents,
            ..
        } => Some(IssuerStatus {
            revoked_on: *revoked_on,
            remaining_medication_cents: *remaining_medication_cents,
        }),
        IssuerAnswer::NotIssued => Some(IssuerStatus {
            revoked_on: None,
            remaining_medication_cents: None,
        }),
        IssuerAnswer::Unreachable => None,
    }
}

/// A genuine voucher as a claim needs it.
#[derive(Debug)]
pub(crate) struct ResolvedVoucher {
    pub(crate) issuer: Member,
    pub(crate) voucher: VerifiedVoucher,
    pub(crate) signed: SignedVoucher,
    /// The issuer's answer, if it could be asked.
    pub(crate) status: Option<IssuerStatus>,
}

/// A voucher as a claim needs it.
pub(crate) enum Resolved {
    Voucher(Box<ResolvedVoucher>),
    /// Not a voucher that can be accepted, and why.
    Invalid(String),
    /// A short code whose issuer could not be asked.
    Unreachable(String),
}

/// Reads a code for a claim: a full code is checked offline with the roster, a short code is
/// fetched from its issuer and checked the same way; in both cases the issuer is asked (if it
/// can be) whether and since when the voucher is revoked. Validity on the day of service is the
/// claim's business; whether the issuer knows the voucher as presented is its own decision,
/// which comes back as a receipt.
pub(crate) async fn resolve(node: &Node, code: &str) -> Resolved {
    let invalid = |Refusal(_, message, _): Refusal| Resolved::Invalid(message);
    let code = match VoucherCode::parse(code) {
        Ok(code) => code,
        Err(error) => return invalid(code_refusal(&error)),
    };
    let roster = node.roster();
    let (signed, answer) = match code {
        VoucherCode::Full(full) => {
            let answer = match check_signed(node, &roster, &full.0) {
                Ok((member, voucher)) => ask_issuer(node, member, voucher.serial).await,
                Err(refused) => return invalid(refused),
            };
            (full.0, answer)
        }
        VoucherCode::Short(short) => {
            let Some(member) = roster.member_by_prefix(short.prefix()) else {
                return Resolved::Invalid(format!(
                    "No clearing office in the network uses the prefix {}.",
                    short.prefix()
                ));
            };
            let answer = ask_issuer(node, member, short.serial()).await;
            match &answer {
                IssuerAnswer::Known { signed, .. } => {
                    match check_signed(node, &roster, signed) {
                        Ok((signer, voucher))
                            if signer.id() == member.id() && voucher.serial == short.serial() => {}
                        Ok(_) => {
                            return Resolved::Invalid(
                                "The issuing office answered with a different voucher.".into(),
                            );
                        }
                        Err(refused) => return invalid(refused),
                    }
                    (signed.clone(), answer)
                }
                IssuerAnswer::NotIssued => return invalid(not_issued(member)),
                IssuerAnswer::Unreachable => {
                    return Resolved::Unreachable(format!(
                        "The issuing office ({}) could not be reached to look up the short code. Submit the claim with the full code from the QR code; it will be settled as soon as the office is back.",
                        member.name()
                    ));
                }
            }
        }
    };
    match check_signed(node, &roster, &signed) {
        Ok((member, voucher)) => Resolved::Voucher(Box::new(ResolvedVoucher {
            issuer: member.clone(),
            voucher,
            signed,
            status: status_of_answer(&answer),
        })),
        Err(refused) => invalid(refused),
    }
}
