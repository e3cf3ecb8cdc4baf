//! Many cities on one machine: N real `schein-node` processes (release build), every member in
//! every roster, a provider and five vouchers at each node. Prints, for each N: set-up time
//! (`init` of every node and the roster exchange), start time until every node serves, memory
//! per node, idle CPU per node, cross-city verify and claim latency, the federation report with
//! every node up and with three nodes stopped with SIGSTOP, and clearing of a past quarter for
//! every pair of nodes (each node closes it; the pairs its peers closed already only exchange
//! statements), and with three nodes stopped.
//!
//! Run: `cargo bench -p schein-node --bench cities` (N = 13 and 50), or `-- 13` for one size.
//! The federation report here asks every node at once from this process, with the same bound
//! and the same calls as `schein report --federation --timeout 3`. One tokio runtime with two
//! worker threads on the client side; each node is a process of its own.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use schein_node::client::IdentityFile;
use schein_node::local::{City, LocalFederation};
use schein_node::pki::Role;
use schein_proto::Day;
use schein_proto::period::Period;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{
    Category, ClaimItem, ClaimState, ClearingRequest, ClearingState, IssueVoucherRequest,
    ListVouchersRequest, ProviderKind, ReportRequest, SubmitClaimRequest, Verdict,
    VerifyVoucherRequest,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The bound a funder's federation report gives every node.
const REPORT_BOUND: Duration = Duration::from_secs(3);
/// Nodes stopped with SIGSTOP for the "hung" measurements.
const HUNG: usize = 3;
/// Rounds of verify and claim, each through every node once.
const ROUNDS: usize = 4;

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![13, 50]
    } else {
        sizes
    };
    println!(
        "schein cities benchmark: {} cores; client: one runtime, 2 workers",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for n in sizes {
        runtime.block_on(cities(n))?;
    }
    Ok(())
}

/// `n` cities with ids `city01`…, prefixes `C01`…
fn city_list(n: usize) -> Vec<City> {
    (1..=n)
        .map(|i| City {
            // A benchmark process: leaking a few names is the simplest way to static strings.
            id: Box::leak(format!("city{i:02}").into_boxed_str()),
            name: Box::leak(format!("City {i:02}").into_boxed_str()),
            prefix: Box::leak(format!("C{i:02}").into_boxed_str()),
        })
        .collect()
}

struct Node {
    child: tokio::process::Child,
    office: IdentityFile,
    provider: IdentityFile,
}

impl Node {
    fn pid(&self) -> Result<u32, Error> {
        self.child.id().ok_or_else(|| "a node exited".into())
    }

    fn signal(&self, signal: &str) -> Result<(), Error> {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid()?.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} failed").into())
        }
    }
}

fn proc_field(pid: u32, file: &str) -> Result<String, Error> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/{file}"))?)
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    proc_field(pid, "status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

/// CPU time the process used so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let stat = proc_field(pid, "stat")?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("odd stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Starts the release node of `dir`; it serves once its office gets an answer.
async fn start(dir: &Path, office: &IdentityFile) -> Result<tokio::process::Child, Error> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_schein-node"))
        .arg("run")
        .env("SCHEIN_NODE_CONFIG", dir.join("schein-node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Ok(channel) = office.connect(None).await {
            let listed = OfficeClient::new(channel)
                .list_vouchers(ListVouchersRequest {
                    limit: 1,
                    ..Default::default()
                })
                .await;
            if listed.is_ok() {
                return Ok(child);
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("a node did not come up within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.len()
    )
}

/// Asks every node for its report at once, each within [`REPORT_BOUND`]; how many answered.
async fn federation_report(
    funder: &IdentityFile,
    nodes: &[Node],
    period: &str,
) -> (usize, Duration) {
    let started = Instant::now();
    let asks = nodes.iter().map(|node| {
        let identity = IdentityFile {
            node: node.office.node.clone(),
            node_name: node.office.node_name.clone(),
            endpoint: node.office.endpoint.clone(),
            node_ca: node.office.node_ca.clone(),
            ..funder.clone()
        };
        let period = period.to_owned();
        async move {
            let ask = async {
                let channel = identity.connect_within(None, REPORT_BOUND).await.ok()?;
                ReportsClient::new(channel)
                    .report(ReportRequest { period })
                    .await
                    .ok()
            };
            tokio::time::timeout(REPORT_BOUND, ask)
                .await
                .ok()
                .flatten()
                .is_some()
        }
    });
    let answered = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter(|a| *a)
        .count();
    (answered, started.elapsed())
}

/// The office of `node` closes `period`; the state and how long it took.
async fn close(node: &Node, period: &str) -> Result<(ClearingState, Duration), Error> {
    let started = Instant::now();
    let result = OfficeClient::new(node.office.connect(None).await?)
        .close_clearing(ClearingRequest {
            period: period.to_owned(),
        })
        .await?
        .into_inner();
    Ok((result.state(), started.elapsed()))
}

async fn cities(n: usize) -> Result<(), Error> {
    println!("\n== {n} cities");
    let dir = tempfile::tempdir()?;
    let cities = city_list(n);
    let setup = Instant::now();
    let federation = LocalFederation::create(dir.path(), &cities).await?;
    let mut offices = Vec::new();
    let mut providers = Vec::new();
    for city in &cities {
        offices.push(federation.office(city.id)?);
        providers.push(federation.enroll(city.id, Role::Provider, "praxis")?);
    }
    let funder = federation.enroll(cities[0].id, Role::Funder, "land")?;
    println!(
        "set-up (init, roster exchange, identities): {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let starting = Instant::now();
    let mut nodes = Vec::new();
    for ((node, office), provider) in federation.nodes.iter().zip(offices).zip(providers) {
        let child = start(&node.dir, &office).await?;
        nodes.push(Node {
            child,
            office,
            provider,
        });
    }
    println!(
        "start until every node serves (one after another): {:.1} s, {:.0} ms per node",
        starting.elapsed().as_secs_f64(),
        starting.elapsed().as_secs_f64() * 1000.0 / n as f64
    );

    // Five vouchers at each node.
    let mut vouchers = Vec::new();
    for node in &nodes {
        let mut office = OfficeClient::new(node.office.connect(None).await?);
        let mut own = Vec::new();
        for _ in 0..5 {
            own.push(
                office
                    .issue_voucher(IssueVoucherRequest::default())
                    .await?
                    .into_inner(),
            );
        }
        vouchers.push(own);
    }

    let mut rss: Vec<f64> = Vec::new();
    for node in &nodes {
        rss.push(rss_kib(node.pid()?)? as f64 / 1024.0);
    }
    rss.sort_by(f64::total_cmp);
    println!(
        "memory per node (RSS): median {:.1} MiB, max {:.1} MiB, all {:.0} MiB",
        percentile(&rss, 0.5),
        percentile(&rss, 1.0),
        rss.iter().sum::<f64>()
    );

    // Idle CPU: nothing asked of the nodes for ten seconds.
    let ticks_before: Vec<u64> = nodes
        .iter()
        .map(|n| n.pid().and_then(cpu_ticks))
        .collect::<Result<_, _>>()?;
    let idle = Duration::from_secs(20);
    tokio::time::sleep(idle).await;
    let mut idle_cpu = Vec::new();
    for (node, before) in nodes.iter().zip(ticks_before) {
        let used = cpu_ticks(node.pid()?)?.saturating_sub(before) as f64;
        idle_cpu.push(used / clock_ticks_per_second() / idle.as_secs_f64() * 100.0);
    }
    // Clock ticks are 10 ms: one node over ten seconds reads 0 or 0.1 %; the mean over all
    // nodes is finer.
    let mean = idle_cpu.iter().sum::<f64>() / idle_cpu.len() as f64;
    idle_cpu.sort_by(f64::total_cmp);
    println!(
        "idle CPU per node over {} s: mean {mean:.3} %, max {:.3} % of a core",
        idle.as_secs(),
        percentile(&idle_cpu, 1.0)
    );

    // Cross-city verify and claim: the provider of city i, through its own node, on a voucher
    // of city i + 1, through every node in each round.
    let mut verify_ms = Vec::new();
    let mut claim_ms = Vec::new();
    for round in 0..ROUNDS {
        for (i, node) in nodes.iter().enumerate() {
            let voucher = &vouchers[(i + 1) % n][round % 5];
            let mut provider = ProviderClient::new(node.provider.connect(None).await?);
            let started = Instant::now();
            let answer = provider
                .verify_voucher(VerifyVoucherRequest {
                    code: voucher.full_code.clone(),
                    for_scope: 0,
                })
                .await?
                .into_inner();
            verify_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            if answer.verdict() != Verdict::Valid {
                return Err(format!("verify: {}", answer.message).into());
            }
            let started = Instant::now();
            let claim = provider
                .submit_claim(SubmitClaimRequest {
                    claim_id: format!("r{round}-{i}"),
                    code: voucher.full_code.clone(),
                    service_date: Some(Day::today().into()),
                    provider_kind: ProviderKind::Practice as i32,
                    items: vec![ClaimItem {
                        fee_code: ["GOAE-1", "GOAE-3", "GOAE-5", "GOAE-7"][round].into(),
                        count: 1,
                        amount_cents: 466,
                    }],
                    category: Category::Treatment as i32,
                })
                .await?
                .into_inner();
            claim_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            if claim.state() != ClaimState::Settled {
                return Err(format!("claim: {}", claim.message).into());
            }
        }
    }
    println!("verify, another city's voucher: {}", summary(verify_ms));
    println!("claim, settled by another city: {}", summary(claim_ms));

    let today = Day::today();
    let period = Period::containing(today.month().ok_or("no month")?)[1].to_string();
    let (answered, took) = federation_report(&funder, &nodes, &period).await;
    println!(
        "federation report, all up: {answered} of {n} answered in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    // Clearing a past quarter (its deadline passed, nothing in it) for every pair.
    let past = Period::containing(
        today
            .checked_add_days(-200)
            .and_then(|d| d.month())
            .ok_or("no month")?,
    )[1]
    .to_string();
    let clearing = Instant::now();
    let mut per_node = Vec::new();
    for node in &nodes {
        let (state, took) = close(node, &past).await?;
        if state != ClearingState::Closed {
            return Err(format!("clearing ended {state:?}").into());
        }
        per_node.push(took.as_secs_f64() * 1000.0);
    }
    println!(
        "clearing {past} for all {} pairs (each node closes): {:.1} s; per node {}",
        n * (n - 1) / 2,
        clearing.elapsed().as_secs_f64(),
        summary(per_node)
    );

    // Three nodes hang.
    for node in &nodes[n - HUNG..] {
        node.signal("-STOP")?;
    }
    let (answered, took) = federation_report(&funder, &nodes, &period).await;
    println!(
        "federation report, {HUNG} nodes hung: {answered} of {n} answered in {:.0} ms (bound {} s)",
        took.as_secs_f64() * 1000.0,
        REPORT_BOUND.as_secs()
    );
    let earlier = Period::containing(
        today
            .checked_add_days(-300)
            .and_then(|d| d.month())
            .ok_or("no month")?,
    )[1]
    .to_string();
    let (state, took) = close(&nodes[0], &earlier).await?;
    println!(
        "clearing {earlier} at one node with {HUNG} peers hung: {state:?} in {:.1} s",
        took.as_secs_f64()
    );
    for node in &nodes[n - HUNG..] {
        node.signal("-CONT")?;
    }
    let (state, took) = close(&nodes[0], &earlier).await?;
    println!(
        "closing {earlier} again once they go on: {state:?} in {:.1} s",
        took.as_secs_f64()
    );
    drop(nodes);
    Ok(())
}
