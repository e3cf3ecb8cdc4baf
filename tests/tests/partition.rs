//! The issuer cut off from the redeemer, two ways, with real `schein-node` processes: first
//! the route blackholed (a proxy between Dresden and Leipzig holds connections and forwards
//! nothing, so Dresden runs into its timeouts), then Leipzig's process killed (connections
//! refused at once). Providers keep claiming at Dresden throughout; the claims are
//! acknowledged as pending, and a verification says "status unknown", never a silent yes.
//! After healing, every claim ends settled exactly once or rejected with a reason — also one
//! on a voucher revoked during the partition, and one that the voucher's cap no longer covers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schein_node::client::IdentityFile;
use schein_node::pki::Role;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ClaimStatusRequest, IssueVoucherRequest, RejectReason,
    RevocationReason, RevokeVoucherRequest, ShowVoucherRequest, Verdict, VerifyVoucherRequest,
    VoucherRecord,
};
use schein_tests::books::{check_pair, check_statements};
use schein_tests::process::ProcessFederation;
use schein_tests::proxy::Proxy;
use schein_tests::{FEE_CODES as CODES, claim_request};

/// How long Dresden waits for Leipzig; short, so that the blackhole costs seconds, not minutes.
const PEER_TIMEOUT_MS: u64 = 1000;

/// Claims of one provider, each on a (voucher, fee code, day) of its own.
struct Claims {
    provider: IdentityFile,
    made: Vec<String>,
}

impl Claims {
    /// Submits claim `id` for `code` on `voucher`; returns the acknowledged record.
    async fn submit(&mut self, id: &str, voucher: &VoucherRecord, code: usize) -> ClaimRecord {
        let (fee_code, cents) = CODES[code % CODES.len()];
        let mut request = claim_request(
            id,
            &voucher.full_code,
            &[(fee_code, 1, cents)],
            Category::Treatment,
        );
        let day = schein_proto::Day::today()
            .checked_add_days(-((code / CODES.len()) as i32))
            .expect("a day in range");
        request.service_date = Some(day.into());
        let channel = self.provider.connect(None).await.expect("the node answers");
        let record = ProviderClient::new(channel)
            .submit_claim(request)
            .await
            .expect("the node answers")
            .into_inner();
        self.made.push(id.to_owned());
        record
    }

    async fn status(&self, id: &str) -> ClaimRecord {
        let channel = self.provider.connect(None).await.expect("the node answers");
        ProviderClient::new(channel)
            .claim_status(ClaimStatusRequest {
                claim_id: id.to_owned(),
            })
            .await
            .expect("the node answers")
            .into_inner()
    }

    /// Waits until every claim is settled or rejected; returns the final records by id.
    async fn final_states(&self, timeout: Duration) -> BTreeMap<String, ClaimRecord> {
        let deadline = Instant::now() + timeout;
        let mut done = BTreeMap::new();
        while done.len() < self.made.len() {
            for id in &self.made {
                if done.contains_key(id) {
                    continue;
                }
                let record = self.status(id).await;
                if matches!(record.state(), ClaimState::Settled | ClaimState::Rejected) {
                    done.insert(id.clone(), record);
                } else {
                    assert_eq!(
                        record.state(),
                        ClaimState::Pending,
                        "{id}: {}",
                        record.message
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "claims still pending after {timeout:?}: {:?}",
                self.made
                    .iter()
                    .filter(|id| !done.contains_key(*id))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        done
    }
}

async fn verify(provider: &IdentityFile, code: &str) -> Verdict {
    let channel = provider.connect(None).await.expect("the node answers");
    ProviderClient::new(channel)
        .verify_voucher(VerifyVoucherRequest {
            code: code.to_owned(),
            for_scope: 0,
        })
        .await
        .expect("the node answers")
        .into_inner()
        .verdict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_during_a_partition_settle_exactly_once_after_healing() {
    let started = Instant::now();
    let mut federation = ProcessFederation::leipzig_and_dresden().unwrap();
    let leipzig_addr = format!("127.0.0.1:{}", federation.node("leipzig").port)
        .parse()
        .unwrap();
    let proxy = Proxy::start(leipzig_addr).await.unwrap();
    // Dresden reaches Leipzig only through the proxy; Leipzig's own clients go direct.
    federation
        .set_endpoint("dresden", "leipzig", &proxy.endpoint())
        .unwrap();
    federation.node_mut("dresden").env =
        vec![("SCHEIN_PEER_TIMEOUT_MS".into(), PEER_TIMEOUT_MS.to_string())];
    federation.start_all().await.unwrap();

    let leipzig_office = federation.node("leipzig").office().unwrap();
    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let mut issue = async |cap_cents: Option<i64>| {
        office
            .issue_voucher(IssueVoucherRequest {
                valid_from: Some(
                    schein_proto::Day::today()
                        .checked_add_days(-30)
                        .unwrap()
                        .into(),
                ),
                cap_cents,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    };
    let voucher = issue(None).await;
    let to_revoke = issue(None).await;
    // Room for the first of two claims on it (EUR 4.66 or 8.74), not for both.
    let small = issue(Some(1000)).await;
    let mut claims = Claims {
        provider: federation
            .node("dresden")
            .enroll(Role::Provider, "praxis")
            .unwrap(),
        made: Vec::new(),
    };

    // Connected: settled at once, or — on a machine slower than the short peer timeout —
    // moments later by the outbox; the final states below hold either way.
    let mut settled_at_once = 0;
    for i in 0..3 {
        let record = claims.submit(&format!("before-{i}"), &voucher, i).await;
        assert!(
            matches!(record.state(), ClaimState::Settled | ClaimState::Pending),
            "{}",
            record.message
        );
        settled_at_once += usize::from(record.state() == ClaimState::Settled);
    }

    // Blackholed: Dresden waits out its timeout, keeps each claim, says so.
    proxy.blackhole();
    let blocked = Instant::now();
    assert_eq!(
        verify(&claims.provider, &voucher.full_code).await,
        Verdict::StatusUnknown,
        "an unreachable issuer is never a silent yes"
    );
    let mut submitted = Vec::new();
    for (i, (id, on, code)) in [
        ("blackholed-0", &voucher, 3),
        ("blackholed-1", &voucher, 4),
        ("blackholed-2", &to_revoke, 0),
        ("blackholed-3", &small, 0),
        ("blackholed-4", &small, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let record = claims.submit(id, on, code).await;
        assert_eq!(
            record.state(),
            ClaimState::Pending,
            "{i}: {}",
            record.message
        );
        submitted.push(id);
    }
    // The office revokes a voucher meanwhile; it reaches its own node directly.
    OfficeClient::new(leipzig_office.connect(None).await.unwrap())
        .revoke_voucher(RevokeVoucherRequest {
            code: to_revoke.short_code.clone(),
            reason: RevocationReason::Stolen as i32,
        })
        .await
        .unwrap();
    // Until the outbox has tried the waiting claims again and timed out again: a round of
    // retries after this point defers each of them once more (logs name no claim, so the
    // deferrals are counted).
    let deferred = |federation: &ProcessFederation| {
        federation
            .node("dresden")
            .log()
            .matches("settlement deferred")
            .count()
    };
    let before = deferred(&federation);
    let retried_by = Instant::now() + Duration::from_secs(120);
    while deferred(&federation) < before + submitted.len() {
        assert!(
            Instant::now() < retried_by,
            "the outbox did not try the blackholed claims again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &submitted {
        let record = claims.status(id).await;
        assert_eq!(
            record.state(),
            ClaimState::Pending,
            "{id} decided through a blackhole"
        );
    }
    let blackholed_for = blocked.elapsed();
    proxy.heal();
    let healed = Instant::now();
    let decided = claims.final_states(Duration::from_secs(120)).await;
    let healing_took = healed.elapsed();

    // The issuer's process gone: connections refused at once.
    federation.node_mut("leipzig").kill().unwrap();
    assert_eq!(
        verify(&claims.provider, &voucher.full_code).await,
        Verdict::StatusUnknown
    );
    for i in 0..3 {
        let record = claims
            .submit(&format!("stopped-{i}"), &voucher, 5 + i)
            .await;
        assert_eq!(record.state(), ClaimState::Pending, "{}", record.message);
    }
    federation.start_one("leipzig").await.unwrap();
    let restarted = Instant::now();
    let decided_after_restart = claims.final_states(Duration::from_secs(120)).await;
    let restart_took = restarted.elapsed();
    assert!(
        decided
            .iter()
            .all(|(id, r)| decided_after_restart[id] == *r),
        "decisions stand"
    );

    // Each claim as expected: settled, or rejected with the reason it deserves.
    let state = |id: &str| {
        let record = &decided_after_restart[id];
        (record.state(), record.reason())
    };
    for id in [
        "before-0",
        "before-1",
        "before-2",
        "blackholed-0",
        "blackholed-1",
    ]
    .into_iter()
    .chain(["stopped-0", "stopped-1", "stopped-2"])
    {
        assert_eq!(state(id).0, ClaimState::Settled, "{id}");
    }
    assert_eq!(
        state("blackholed-2"),
        (ClaimState::Rejected, RejectReason::Revoked)
    );
    let mut on_small = [state("blackholed-3"), state("blackholed-4")];
    on_small.sort_by_key(|(s, _)| *s as i32);
    assert_eq!(
        on_small,
        [
            (ClaimState::Settled, RejectReason::Unspecified),
            (ClaimState::Rejected, RejectReason::OverCap)
        ],
        "exactly one of the two fits under the cap"
    );

    let books = check_pair(
        federation.node("leipzig"),
        federation.node("dresden"),
        &claims.provider,
        &claims.made,
    )
    .await
    .unwrap();
    check_statements(
        federation.node("leipzig"),
        federation.node("dresden"),
        &books,
    )
    .await
    .unwrap();
    let mut office = OfficeClient::new(leipzig_office.connect(None).await.unwrap());
    let revoked = office
        .show_voucher(ShowVoucherRequest {
            code: to_revoke.short_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked.claimed_cents, 0,
        "nothing paid on the revoked voucher"
    );
    println!(
        "partition: claims {}, settled {} ({settled_at_once} of 3 at once before the partition), rejected {} {:?}, lost {}, doubled {}; blackholed {blackholed_for:.1?}, settled {healing_took:.1?} after healing and {restart_took:.1?} after the restart; all {:.1?}",
        claims.made.len(),
        books.settled,
        books.rejected,
        books.reasons,
        books.lost,
        books.doubled,
        started.elapsed()
    );
    assert_eq!(books.lost, 0);
    assert_eq!(books.doubled, 0);
    assert_eq!((books.settled, books.rejected), (9, 2));
}
