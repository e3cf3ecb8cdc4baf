//! Two real `schein-node` processes, Leipzig and Dresden, each the issuer of the other's
//! claims, are killed with SIGKILL at random moments while providers of both cities claim on
//! the other city's vouchers. Every killed node is started again on its data at once. The
//! providers retry a failed submission with the same claim id until it is acknowledged.
//!
//! Afterwards every acknowledged claim is settled exactly once: none lost, none doubled, every
//! receipt genuine and the same on both sides, both ledgers' chains intact, and each issuer's
//! liabilities equal the redeemer's receivables claim by claim and voucher by voucher.
//!
//! The short run makes 10 kills; `SCHEIN_LONG_TESTS=1` makes 100. `SCHEIN_SEED=<n>` replays
//! a run: the seed decides which node dies and when (the machine's timing still varies).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use schein_node::client::IdentityFile;
use schein_node::pki::Role;
use schein_proto::error::reason_of;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    ClaimState, IssueVoucherRequest, ListClaimsRequest, SubmitClaimRequest, VoucherRecord,
};
use schein_tests::books::{check_pair, check_statements};
use schein_tests::process::ProcessFederation;
use schein_tests::{FEE_CODES as CODES, claim_request, long_tests};
use tokio::time::timeout;
use tonic::Code;
use tonic::transport::Channel;

/// Longest wait for one call: a node that accepts connections but never answers (wedged) is
/// a failure to report, not a reason to hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest time without any claim acknowledged before the run counts as stuck.
const STALL: Duration = Duration::from_secs(60);

const DAYS_PER_VOUCHER: usize = 7;
const CLAIMS_PER_VOUCHER: usize = CODES.len() * DAYS_PER_VOUCHER;

/// SplitMix64: a seeded generator, so that a failing run's kill schedule can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Claims of one city's provider on the other city's vouchers.
struct Direction {
    issuer: &'static str,
    redeemer: &'static str,
    provider: IdentityFile,
    vouchers: Vec<VoucherRecord>,
    claims: usize,
    next: AtomicUsize,
    acknowledged: AtomicUsize,
    /// Submissions that failed (node down, connection cut) and were sent again.
    retries: AtomicUsize,
    /// Claims acknowledged as pending: the issuer was not reachable at that moment.
    pending: AtomicUsize,
}

impl Direction {
    fn claim_id(&self, i: usize) -> String {
        format!("{}-{i}", self.redeemer)
    }

    /// Claim `i`: a voucher, a fee code and a service day no other claim of this provider
    /// has, so that no claim is held as a duplicate and no voucher goes over its cap.
    fn request(&self, i: usize) -> SubmitClaimRequest {
        let voucher = &self.vouchers[i / CLAIMS_PER_VOUCHER];
        let j = i % CLAIMS_PER_VOUCHER;
        let (code, cents) = CODES[j % CODES.len()];
        let mut request = claim_request(
            &self.claim_id(i),
            &voucher.full_code,
            &[(code, 1, cents)],
            schein_proto::v1::Category::Treatment,
        );
        let day = schein_proto::Day::today()
            .checked_add_days(-((j / CODES.len()) as i32))
            .expect("a day in range");
        request.service_date = Some(day.into());
        request
    }

    /// Takes the next claim and submits it until the node acknowledges it.
    async fn work(self: Arc<Self>) {
        let mut channel: Option<Channel> = None;
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.claims {
                return;
            }
            let request = self.request(i);
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "claim {} never acknowledged",
                    request.claim_id
                );
                let Some(open) = channel.clone() else {
                    match timeout(CALL_TIMEOUT, self.provider.connect(None)).await {
                        Ok(Ok(open)) => channel = Some(open),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                    continue;
                };
                let submitted = timeout(
                    CALL_TIMEOUT,
                    ProviderClient::new(open).submit_claim(request.clone()),
                )
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
                match submitted {
                    Ok(answer) => {
                        let state = answer.get_ref().state();
                        if state == ClaimState::Pending {
                            self.pending.fetch_add(1, Ordering::SeqCst);
                        }
                        assert!(
                            matches!(state, ClaimState::Pending | ClaimState::Settled),
                            "claim {}: {state:?}: {}",
                            request.claim_id,
                            answer.get_ref().message
                        );
                        self.acknowledged.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Err(status) => {
                        // Only a failure of the connection (the node was killed, or did not
                        // answer in time) is sent again. A refusal with a reason is the node's
                        // answer, and an error the node itself reports (INTERNAL, …) a defect:
                        // neither is expected for these claims.
                        let transport = std::error::Error::source(&status).is_some()
                            || matches!(
                                status.code(),
                                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
                            );
                        assert!(
                            reason_of(&status).is_none() && transport,
                            "claim {} refused: {status:?}",
                            request.claim_id
                        );
                        self.retries.fetch_add(1, Ordering::SeqCst);
                        channel = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }
}

async fn issue_vouchers(office: &IdentityFile, count: usize) -> Vec<VoucherRecord> {
    let mut client = OfficeClient::new(office.connect(None).await.expect("the issuer answers"));
    let mut vouchers = Vec::new();
    for _ in 0..count {
        let request = IssueVoucherRequest {
            valid_from: Some(
                schein_proto::Day::today()
                    .checked_add_days(-30)
                    .expect("the issuer answers")
                    .into(),
            ),
            ..Default::default()
        };
        vouchers.push(
            client
                .issue_voucher(request)
                .await
                .expect("the issuer answers")
                .into_inner(),
        );
    }
    vouchers
}

/// Waits until `provider` has no claim waiting for its receipt.
async fn drained(provider: &IdentityFile, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let pending = timeout(CALL_TIMEOUT, async {
            let channel = provider.connect(None).await.ok()?;
            let page = ProviderClient::new(channel)
                .list_claims(ListClaimsRequest {
                    pending_only: true,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .ok()?;
            Some(page.into_inner().claims.len())
        })
        .await
        .ok()
        .flatten();
        if pending == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending:?} claims still pending at {} after {within:?}",
            provider.node
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn hard_kill(claims_per_direction: usize, kills: usize) {
    let seed = std::env::var("SCHEIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64
        });
    eprintln!(
        "hard kill: seed {seed} (SCHEIN_SEED={seed} replays it), {kills} kills, {claims_per_direction} claims each way"
    );
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut federation = ProcessFederation::leipzig_and_dresden().expect("nodes are created");
    federation.start_all().await.expect("the nodes start");
    let vouchers_needed = claims_per_direction.div_ceil(CLAIMS_PER_VOUCHER);
    let mut directions = Vec::new();
    for (issuer, redeemer) in [("leipzig", "dresden"), ("dresden", "leipzig")] {
        let vouchers = issue_vouchers(
            &federation
                .node(issuer)
                .office()
                .expect("the issuer has an office"),
            vouchers_needed,
        )
        .await;
        directions.push(Arc::new(Direction {
            issuer,
            redeemer,
            provider: federation
                .node(redeemer)
                .enroll(Role::Provider, "praxis")
                .expect("a provider is enrolled"),
            vouchers,
            claims: claims_per_direction,
            next: AtomicUsize::new(0),
            acknowledged: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
        }));
    }

    // Three submissions in flight per city, so that kills land mid-settlement too.
    let mut workers = Vec::new();
    for direction in &directions {
        for _ in 0..3 {
            workers.push(tokio::spawn(direction.clone().work()));
        }
    }
    let acknowledged = || {
        directions
            .iter()
            .map(|d| d.acknowledged.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    let total = 2 * claims_per_direction;
    let mut killed = [0usize; 2];
    let mut serving_kills = 0;
    let names = ["leipzig", "dresden"];
    for k in 0..kills {
        // Kills spread over the run: the k-th once this share of the claims is acknowledged,
        // then after a random pause, so that some land while a node is still starting.
        let threshold = (k + 1) * total / (kills + 2);
        let mut last = (acknowledged(), Instant::now());
        while acknowledged() < threshold && !workers.iter().all(|w| w.is_finished()) {
            if acknowledged() != last.0 {
                last = (acknowledged(), Instant::now());
            }
            assert!(
                last.1.elapsed() < STALL,
                "no claim acknowledged for {STALL:?} before kill {k} (seed {seed}); the nodes' last words:\n{}",
                federation
                    .nodes
                    .iter()
                    .map(|n| format!("== {}\n{}", n.id, n.log_tail(15)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim = rng.below(2) as usize;
        let node = federation.node_mut(names[victim]);
        // Mostly while the node serves, mid-traffic; sometimes while it is still starting
        // (recovering its store, binding its port).
        if rng.below(4) != 0 {
            node.ready(Duration::from_secs(60))
                .await
                .expect("the node comes back");
            serving_kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        node.kill().expect("the node can be killed");
        killed[victim] += 1;
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        node.start().expect("the node starts again");
    }
    for worker in workers {
        worker.await.expect("no worker failed");
    }
    let claiming = started.elapsed();
    for node in &mut federation.nodes {
        node.ready(Duration::from_secs(60))
            .await
            .expect("the node serves");
    }
    for direction in &directions {
        drained(&direction.provider, Duration::from_secs(180)).await;
    }

    let (mut lost, mut doubled, mut settled, mut retries, mut pending) = (0, 0, 0, 0, 0);
    for direction in &directions {
        let ids: Vec<String> = (0..direction.claims)
            .map(|i| direction.claim_id(i))
            .collect();
        let books = timeout(
            Duration::from_secs(180),
            check_pair(
                federation.node(direction.issuer),
                federation.node(direction.redeemer),
                &direction.provider,
                &ids,
            ),
        )
        .await
        .expect("the books can be read")
        .expect("the books check out");
        // And the signed statements clearing reads agree with both ledgers.
        timeout(
            Duration::from_secs(180),
            check_statements(
                federation.node(direction.issuer),
                federation.node(direction.redeemer),
                &books,
            ),
        )
        .await
        .expect("the statements can be read")
        .expect("the statements check out");
        eprintln!(
            "  {} → {}: {} acknowledged, {} settled ({} cents on {} vouchers), {} rejected, lost {}, doubled {}",
            direction.redeemer,
            direction.issuer,
            direction.acknowledged.load(Ordering::SeqCst),
            books.settled,
            books.settled_cents,
            books.vouchers,
            books.rejected,
            books.lost,
            books.doubled
        );
        assert_eq!(books.rejected, 0, "{:?}", books.reasons);
        lost += books.lost;
        doubled += books.doubled;
        settled += books.settled;
        retries += direction.retries.load(Ordering::SeqCst);
        pending += direction.pending.load(Ordering::SeqCst);
    }
    println!(
        "hard kill (seed {seed}): kills {} (leipzig {}, dresden {}; {serving_kills} while serving), claims {total}, acknowledged {} ({pending} as pending), settled {settled}, lost {lost}, doubled {doubled}, resubmissions {retries}, node starts {}; claiming took {claiming:.1?}, all {:.1?}",
        kills,
        killed[0],
        killed[1],
        acknowledged(),
        federation.nodes.iter().map(|n| n.starts).sum::<u32>(),
        started.elapsed()
    );
    assert_eq!(acknowledged(), total);
    assert_eq!(lost, 0, "claims lost");
    assert_eq!(doubled, 0, "claims doubled");
    assert_eq!(settled, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let (claims, kills) = if long_tests() { (2500, 100) } else { (250, 10) };
    // SCHEIN_HARD_KILLS overrides the number of kills (0: the same load, nothing killed).
    let kills = std::env::var("SCHEIN_HARD_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(kills);
    hard_kill(claims, kills).await;
}
