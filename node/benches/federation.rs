//! Federation benchmark: verify and settle through real nodes (Leipzig, Dresden, Chemnitz as
//! `schein-node` processes of their own, on loopback, over mutual TLS, with sled in a temporary
//! directory), each figure printed next to the bare costs of its parts measured in the same run,
//! and `achieved / ideal`.
//!
//! Run: `cargo bench -p schein-node --bench federation` (all sections), or name sections:
//! `-- parts verify settle footprint`. `SCHEIN_BENCH_SECS` sets the seconds per measurement
//! (default 3), `SCHEIN_BENCH_VOUCHERS` the vouchers stored for the start-up time (default 10^6),
//! `SCHEIN_BENCH_NODE_LOG` a directory for the nodes' logs (default: discarded).
//!
//! Process layout: every node is its own process (as in production: sled's transaction lock is
//! process-wide); the bare echo RPC is served by a process of its own too, started from this
//! binary, with Leipzig's certificate and the node's own TLS acceptor. The client side (this
//! process) runs one tokio runtime with 2 worker threads.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use schein_node::client::IdentityFile;
use schein_node::config::Config;
use schein_node::local::{LocalFederation, SAXONY};
use schein_node::pki::Role;
use schein_node::store::Store;
use schein_node::tls::{RosterClientVerifier, server_config, spawn_acceptor};
use schein_proto::Day;
use schein_proto::bench::EchoMessage;
use schein_proto::bench::echo_client::EchoClient;
use schein_proto::bench::echo_server::{Echo, EchoServer};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimItem, ClaimState, IssueVoucherRequest, ListVouchersRequest, ProviderKind, Scope,
    SubmitClaimRequest, Verdict, VerifyVoucherRequest, VerifyVouchersRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

mod common;
use common::Error;

/// Requests in flight for the concurrent measurements: one HTTP/2 connection, as a node's
/// providers share their node's connection.
const CONCURRENT: usize = 64;
/// Vouchers claimed on in the settle runs; each gets at most one claim per day of the last
/// month, so no claim is a duplicate of another and no cap is reached.
const SETTLE_VOUCHERS: u64 = 1024;
const SETTLE_DAYS: u64 = 31;
/// Codes per batch request, and batch requests in flight.
const BATCH: usize = 64;
const BATCH_IN_FLIGHT: usize = 4;

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match std::env::var_os(ECHO_SERVER) {
        Some(config) => runtime.block_on(serve_echo(Path::new(&config))),
        None => runtime.block_on(run()),
    }
}

async fn run() -> Result<(), Error> {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let secs = std::env::var("SCHEIN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("schein federation benchmark: {cores} cores, {secs} s per measurement");

    let dir = tempfile::tempdir()?;
    let federation = LocalFederation::create(dir.path(), &SAXONY).await?;
    let mut nodes = Vec::new();
    for node in &federation.nodes {
        let identity = federation.office(node.city.id)?;
        nodes.push(NodeProcess::start(&node.config_path(), &identity).await?);
    }
    let mut bench = Bench::new(&federation).await?;
    bench.processes = federation
        .nodes
        .iter()
        .zip(&nodes)
        .filter_map(|(node, process)| Some((node.city.id, process.child.id()?)))
        .chain([("client", std::process::id())])
        .collect();

    let needs_parts = wanted("parts") || wanted("verify") || wanted("settle");
    let parts = if needs_parts {
        Some(Parts::measure(&federation, secs, cores, bench.code_len).await?)
    } else {
        None
    };
    if let Some(parts) = &parts {
        parts.print();
        if wanted("verify") {
            bench.verify(parts, secs).await?;
        }
        if wanted("settle") {
            bench.settle(parts, secs).await?;
        }
    }
    if wanted("store") {
        store_settle(secs).await?;
    }
    if wanted("footprint") {
        footprint(&federation, &bench).await?;
    }
    drop(nodes);
    Ok(())
}

/// Where a node's log goes: nowhere, or `$SCHEIN_BENCH_NODE_LOG/<node>.log` to look into a run.
fn node_log(config: &Path) -> Result<std::process::Stdio, Error> {
    let Some(dir) = std::env::var_os("SCHEIN_BENCH_NODE_LOG") else {
        return Ok(std::process::Stdio::null());
    };
    let node = config
        .parent()
        .and_then(Path::file_name)
        .ok_or("a node config outside a node directory")?;
    let path = Path::new(&dir).join(node).with_extension("log");
    Ok(std::fs::File::create(path)?.into())
}

/// A `schein-node` process, killed when dropped.
struct NodeProcess {
    child: tokio::process::Child,
    /// Seconds from start until it answered an office call.
    served_after: f64,
}

impl NodeProcess {
    /// Starts the release `schein-node` on `config` and waits until `identity` gets an answer.
    async fn start(config: &Path, identity: &IdentityFile) -> Result<Self, Error> {
        let started = Instant::now();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_schein-node"))
            .arg("run")
            .env("SCHEIN_NODE_CONFIG", config)
            .stderr(std::process::Stdio::null())
            .stdout(node_log(config)?)
            .kill_on_drop(true)
            .spawn()?;
        loop {
            if let Ok(channel) = identity.connect(None).await {
                let listed = OfficeClient::new(channel)
                    .list_vouchers(ListVouchersRequest {
                        limit: 1,
                        ..Default::default()
                    })
                    .await;
                if listed.is_ok() {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err("a node did not come up within 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self {
            child,
            served_after: started.elapsed().as_secs_f64(),
        })
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> Result<u64, Error> {
        let pid = self.child.id().ok_or("the node exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc".into())
    }
}

/// Latencies and rate of one closed-loop measurement.
#[derive(Clone, Copy, Debug)]
struct Stats {
    failed: u64,
    rate: f64,
    p50: f64,
    p99: f64,
}

impl Stats {
    fn from_latencies(mut latencies: Vec<f64>, failed: u64, elapsed: f64) -> Self {
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Self {
            failed,
            rate: latencies.len() as f64 / elapsed,
            p50: at(0.5),
            p99: at(0.99),
        }
    }
}

/// Runs `op(n)` with `in_flight` callers for `secs` seconds after a short warm-up; `op` says
/// whether the operation succeeded. Failed operations are counted, not timed.
async fn closed_loop<F, Fut>(in_flight: usize, secs: f64, op: F) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let warm_up = Duration::from_secs_f64(secs / 10.0);
    let measure = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (op, counter) = (op.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0;
            loop {
                let began = Instant::now();
                if began >= start + warm_up + measure {
                    break;
                }
                let ok = op(counter.fetch_add(1, Ordering::Relaxed)).await;
                if began < start + warm_up {
                    continue;
                }
                if ok {
                    latencies.push(began.elapsed().as_secs_f64() * 1e6);
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for worker in workers {
        if let Ok((latencies, f)) = worker.await {
            all.extend(latencies);
            failed += f;
        }
    }
    let elapsed = start.elapsed().as_secs_f64() - warm_up.as_secs_f64();
    Stats::from_latencies(all, failed, elapsed)
}

/// Times `op` run `n` times on this thread; seconds per call.
fn per_call(n: u32, mut op: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    start.elapsed().as_secs_f64() / f64::from(n)
}

/// The bare costs, measured in this run.
struct Parts {
    cores: usize,
    echo_1: Stats,
    echo_n: Stats,
    /// Seconds per ed25519 signature, one core.
    sign: f64,
    /// Seconds per `verify_strict`, one core.
    verify: f64,
    /// Seconds per signature in a batch of 64 (`verify_batch`), one core.
    verify_batch: f64,
    /// Seconds per durable sled write when each is flushed alone.
    write_flush: f64,
    /// Seconds per durable sled write when 64 writes share a flush.
    write_group: f64,
}

impl Parts {
    async fn measure(
        federation: &LocalFederation,
        secs: f64,
        cores: usize,
        payload: usize,
    ) -> Result<Self, Error> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let message = vec![7u8; 200];
        let signature = key.sign(&message);
        let public = key.verifying_key();
        let sign = per_call(20_000, |_| {
            std::hint::black_box(key.sign(std::hint::black_box(&message)));
        });
        let verify = per_call(10_000, |_| {
            let ok = public.verify_strict(std::hint::black_box(&message), &signature);
            std::hint::black_box(ok.is_ok());
        });
        let keys: Vec<SigningKey> = (0..64)
            .map(|_| SigningKey::generate(&mut rand::rngs::OsRng))
            .collect();
        let signatures: Vec<_> = keys.iter().map(|k| k.sign(&message)).collect();
        let publics: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        let messages: Vec<&[u8]> = vec![&message; 64];
        let verify_batch = per_call(200, |_| {
            let ok = ed25519_dalek::verify_batch(&messages, &signatures, &publics);
            std::hint::black_box(ok.is_ok());
        }) / 64.0;

        let sled_dir = tempfile::tempdir()?;
        let db = sled::Config::new()
            .path(sled_dir.path())
            .flush_every_ms(None)
            .open()?;
        let value = vec![1u8; 300];
        let writes = 400u64;
        let start = Instant::now();
        for i in 0..writes {
            db.insert(i.to_be_bytes(), value.as_slice())?;
            db.flush()?;
        }
        let write_flush = start.elapsed().as_secs_f64() / writes as f64;
        let start = Instant::now();
        let batches = 200u64;
        for b in 0..batches {
            for i in 0..64u64 {
                db.insert((1_000_000 + b * 64 + i).to_be_bytes(), value.as_slice())?;
            }
            db.flush()?;
        }
        let write_group = start.elapsed().as_secs_f64() / (batches * 64) as f64;

        let (echo_1, echo_n) = echo(federation, secs, payload).await?;
        Ok(Self {
            cores,
            echo_1,
            echo_n,
            sign,
            verify,
            verify_batch,
            write_flush,
            write_group,
        })
    }

    fn print(&self) {
        println!("\nbare parts (same machine, same run)");
        let rate = |s: f64| 1.0 / s;
        println!(
            "  ed25519 sign              {:>10.0} /s per core",
            rate(self.sign)
        );
        println!(
            "  ed25519 verify_strict     {:>10.0} /s per core",
            rate(self.verify)
        );
        println!(
            "  ed25519 verify_batch(64)  {:>10.0} signatures/s per core",
            rate(self.verify_batch)
        );
        println!(
            "  sled write + flush each   {:>10.0} /s ({:.0} µs each)",
            rate(self.write_flush),
            self.write_flush * 1e6
        );
        println!(
            "  sled write, 64 per flush  {:>10.0} /s",
            rate(self.write_group)
        );
        for (label, s) in [("1", self.echo_1), ("64", self.echo_n)] {
            println!(
                "  mTLS echo, {label:>2} in flight   {:>10.0} /s   p50 {:>7.0} µs  p99 {:>7.0} µs",
                s.rate, s.p50, s.p99
            );
        }
    }

    /// Seconds of one RPC when `in_flight` share the connection: the echo's mean latency alone,
    /// or its share of the machine at full concurrency.
    fn rpc(&self, in_flight: usize) -> f64 {
        if in_flight == 1 {
            1.0 / self.echo_1.rate
        } else {
            1.0 / self.echo_n.rate
        }
    }

    /// CPU work spread over the cores when many requests run at once, else on one.
    fn cpu(&self, seconds: f64, in_flight: usize) -> f64 {
        if in_flight == 1 {
            seconds
        } else {
            seconds / self.cores as f64
        }
    }
}

struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Set (to a node's config file) in the child that serves the echo.
const ECHO_SERVER: &str = "SCHEIN_BENCH_ECHO_SERVER";

/// The echo server process: serves with the node's certificate, roster verifier and acceptor,
/// prints its port, and runs until killed.
async fn serve_echo(config: &Path) -> Result<(), Error> {
    let config = Config::load_with_env(config, [])?;
    let verifier = Arc::new(RosterClientVerifier::new(&config.roster)?);
    let tls = Arc::new(server_config(&config.tls, verifier.clone())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    // No store here: an empty flush histogram.
    let metrics = Arc::new(schein_node::metrics::Metrics::new(
        &config,
        schein_node::store::FlushSeconds::new(std::iter::empty()),
    ));
    let incoming = tokio_stream::wrappers::ReceiverStream::new(spawn_acceptor(
        listener,
        tls,
        verifier,
        Default::default(),
        metrics,
    ));
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// The bare RPC: an echo of `payload` bytes from a process of its own, served with Leipzig's
/// certificate through the node's acceptor, called with Leipzig's office identity.
async fn echo(
    federation: &LocalFederation,
    secs: f64,
    payload: usize,
) -> Result<(Stats, Stats), Error> {
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .env(ECHO_SERVER, federation.node("leipzig")?.config_path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = server.stdout.take().ok_or("no stdout of the echo server")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await?;
    let port: u16 = line.trim().parse()?;
    let office = federation.office("leipzig")?;
    let channel = office
        .connect(Some(&format!("https://127.0.0.1:{port}")))
        .await?;
    let body = vec![0x5a; payload];
    let call = move |_| {
        let (channel, body) = (channel.clone(), body.clone());
        async move {
            EchoClient::new(channel)
                .echo(EchoMessage { payload: body })
                .await
                .is_ok()
        }
    };
    let one = closed_loop(1, secs, call.clone()).await;
    let many = closed_loop(CONCURRENT, secs, call).await;
    server.kill().await?;
    Ok((one, many))
}

/// Clients and vouchers shared by the measurements.
struct Bench {
    leipzig_provider: Channel,
    dresden_provider: Channel,
    leipzig_office: Channel,
    /// Full codes of Leipzig vouchers valid since a month ago.
    codes: Arc<Vec<String>>,
    code_len: usize,
    /// The next unused (voucher, day) pair for a claim.
    next_claim: Arc<AtomicU64>,
    /// The node processes and this one, whose CPU time is read around a measurement.
    processes: Vec<(&'static str, u32)>,
}

impl Bench {
    async fn new(federation: &LocalFederation) -> Result<Self, Error> {
        let leipzig_office = federation.office("leipzig")?.connect(None).await?;
        let provider = |id: &str| -> Result<IdentityFile, Error> {
            Ok(federation.enroll(id, Role::Provider, "praxis-bench")?)
        };
        let leipzig_provider = provider("leipzig")?.connect(None).await?;
        let dresden_provider = provider("dresden")?.connect(None).await?;
        let valid_from = Day::today()
            .checked_add_days(-(SETTLE_DAYS as i32 - 1))
            .ok_or("date out of range")?;
        let issue = {
            let office = leipzig_office.clone();
            move |_| {
                let office = office.clone();
                async move {
                    OfficeClient::new(office)
                        .issue_voucher(IssueVoucherRequest {
                            valid_from: Some(valid_from.into()),
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner().full_code)
                }
            }
        };
        let mut codes = Vec::new();
        let mut pending = futures::stream::FuturesUnordered::new();
        for n in 0..SETTLE_VOUCHERS {
            pending.push(issue(n));
            if pending.len() >= CONCURRENT
                && let Some(code) = futures::StreamExt::next(&mut pending).await
            {
                codes.push(code?);
            }
        }
        while let Some(code) = futures::StreamExt::next(&mut pending).await {
            codes.push(code?);
        }
        let code_len = codes.first().map_or(0, String::len);
        Ok(Self {
            leipzig_provider,
            dresden_provider,
            leipzig_office,
            codes: Arc::new(codes),
            code_len,
            next_claim: Arc::new(AtomicU64::new(0)),
            processes: Vec::new(),
        })
    }

    async fn verify(&self, parts: &Parts, secs: f64) -> Result<(), Error> {
        table_header("verify: a provider checks a full code through its own node");
        for (case, channel, hops) in [
            ("local voucher", &self.leipzig_provider, 1.0),
            ("another city's voucher", &self.dresden_provider, 2.0),
        ] {
            for in_flight in [1, CONCURRENT] {
                let (channel, codes) = (channel.clone(), self.codes.clone());
                let cpu_before = self.cpu();
                let stats = closed_loop(in_flight, secs, move |n| {
                    let (channel, codes) = (channel.clone(), codes.clone());
                    async move {
                        let code = codes[n as usize % codes.len()].clone();
                        let answer = ProviderClient::new(channel)
                            .verify_voucher(VerifyVoucherRequest {
                                code,
                                for_scope: Scope::Unspecified as i32,
                            })
                            .await;
                        answer.is_ok_and(|a| a.get_ref().verdict() == Verdict::Valid)
                    }
                })
                .await;
                // What cannot be avoided: the provider's RPC, the status RPC to another
                // issuer, and one strict signature check.
                let ideal =
                    1.0 / (hops * parts.rpc(in_flight) + parts.cpu(parts.verify, in_flight));
                report_row(
                    &format!("{case}, {in_flight} in flight"),
                    &stats,
                    ideal,
                    parts,
                );
                self.print_cpu(&cpu_before, &stats, secs);
            }
        }
        println!(
            "  batches of {BATCH} codes in one VerifyVouchers request, {BATCH_IN_FLIGHT} requests in flight (per voucher; ideal: one at a time, 64 in flight)"
        );
        for (case, channel, hops) in [
            ("local vouchers", &self.leipzig_provider, 1.0),
            ("another city's vouchers", &self.dresden_provider, 2.0),
        ] {
            let (channel, codes) = (channel.clone(), self.codes.clone());
            let stats = closed_loop(BATCH_IN_FLIGHT, secs, move |n| {
                let (channel, codes) = (channel.clone(), codes.clone());
                async move {
                    let vouchers = (0..BATCH as u64)
                        .map(|i| VerifyVoucherRequest {
                            code: codes[((n * BATCH as u64 + i) % codes.len() as u64) as usize]
                                .clone(),
                            for_scope: Scope::Unspecified as i32,
                        })
                        .collect();
                    let answer = ProviderClient::new(channel)
                        .verify_vouchers(VerifyVouchersRequest { vouchers })
                        .await;
                    answer.is_ok_and(|a| {
                        a.get_ref()
                            .verifications
                            .iter()
                            .all(|v| v.verdict() == Verdict::Valid)
                    })
                }
            })
            .await;
            let per_voucher = Stats {
                rate: stats.rate * BATCH as f64,
                ..stats
            };
            let one_at_a_time =
                1.0 / (hops * parts.rpc(CONCURRENT) + parts.cpu(parts.verify, CONCURRENT));
            report_row(
                &format!("{case}, batch"),
                &per_voucher,
                one_at_a_time,
                parts,
            );
        }
        Ok(())
    }

    async fn settle(&self, parts: &Parts, secs: f64) -> Result<(), Error> {
        table_header(
            "settle: durable claims (provider -> redeeming node -> issuing node, receipt stored)",
        );
        for (case, channel, hops) in [
            ("same city", &self.leipzig_provider, 1.0),
            ("another city", &self.dresden_provider, 2.0),
        ] {
            for in_flight in [1, CONCURRENT] {
                let (channel, codes, next) =
                    (channel.clone(), self.codes.clone(), self.next_claim.clone());
                let cpu_before = self.cpu();
                let stats = closed_loop(in_flight, secs, move |_| {
                    let (channel, codes, next) = (channel.clone(), codes.clone(), next.clone());
                    async move {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = claim(&codes, n) else {
                            return false;
                        };
                        let answer = ProviderClient::new(channel).submit_claim(request).await;
                        answer.is_ok_and(|a| a.get_ref().state() == ClaimState::Settled)
                    }
                })
                .await;
                // What cannot be avoided: the provider's RPC and, for another city's voucher,
                // the settle RPC; three durable writes (the claim and its outbox entry, the
                // issuer's settlement, the receipt); two signatures (record, receipt) and three
                // strict checks (voucher, record, receipt). Writes share flushes when many
                // claims run at once.
                let write = if in_flight == 1 {
                    parts.write_flush
                } else {
                    parts.write_group
                };
                let ideal = 1.0
                    / (hops * parts.rpc(in_flight)
                        + 3.0 * write
                        + parts.cpu(2.0 * parts.sign + 3.0 * parts.verify, in_flight));
                report_row(
                    &format!("{case}, {in_flight} in flight"),
                    &stats,
                    ideal,
                    parts,
                );
                self.print_cpu(&cpu_before, &stats, secs);
            }
        }
        Ok(())
    }

    /// CPU seconds used so far by each process.
    fn cpu(&self) -> Vec<f64> {
        self.processes
            .iter()
            .map(|(_, pid)| cpu_seconds(*pid).unwrap_or(f64::NAN))
            .collect()
    }

    /// CPU time per answered operation of each process since `before`; the warm-up's share is
    /// taken out by scaling with the measured time over the whole.
    fn print_cpu(&self, before: &[f64], stats: &Stats, secs: f64) {
        let ops = stats.rate * secs * 1.1;
        let parts: Vec<String> = self
            .processes
            .iter()
            .zip(self.cpu().iter().zip(before))
            .map(|((name, _), (after, before))| {
                format!("{name} {:.0}", (after - before) / ops * 1e6)
            })
            .collect();
        println!("    CPU µs per operation: {}", parts.join(", "));
    }
}

/// CPU seconds (user and system) process `pid` has used, from `/proc/<pid>/stat` (in clock
/// ticks of 1/100 s, as Linux reports them to user space).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Claim number `n`: voucher `n mod V` on day `n / V` of the last month, so that no two
/// claims are the same treatment; `None` once every pair is used.
fn claim(codes: &[String], n: u64) -> Option<SubmitClaimRequest> {
    let voucher = n % codes.len() as u64;
    let day = n / codes.len() as u64;
    if day >= SETTLE_DAYS {
        return None;
    }
    Some(SubmitClaimRequest {
        claim_id: format!("bench-{n}"),
        code: codes[voucher as usize].clone(),
        service_date: Some(Day::today().checked_add_days(-(day as i32))?.into()),
        provider_kind: ProviderKind::Practice as i32,
        items: vec![ClaimItem {
            fee_code: "GOAE-1".into(),
            count: 1,
            amount_cents: 466,
        }],
        category: Category::Treatment as i32,
    })
}

/// A section's title and the column heads [`report_row`] fills.
fn table_header(title: &str) {
    println!("\n{title}");
    println!(
        "  {:<40} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "case", "ops/s", "p50 µs", "p99 µs", "ideal/s", "ach/id", "p50/rpc"
    );
}

fn report_row(case: &str, stats: &Stats, ideal: f64, parts: &Parts) {
    let failed = if stats.failed > 0 {
        format!("  ({} failed)", stats.failed)
    } else {
        String::new()
    };
    println!(
        "  {case:<40} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.2} {:>7.1}{failed}",
        stats.rate,
        stats.p50,
        stats.p99,
        ideal,
        stats.rate / ideal,
        stats.p50 / parts.echo_1.p50,
    );
}

/// Bytes on disk under `dir` (allocated blocks, as `du` counts them).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Idle memory, storage per voucher and per claim, start-up time with many vouchers.
async fn footprint(federation: &LocalFederation, bench: &Bench) -> Result<(), Error> {
    println!("\nfootprint");
    let data = |id: &str| -> Result<std::path::PathBuf, Error> {
        Ok(federation.node(id)?.config()?.data_dir)
    };
    // Storage: grow Leipzig by issued vouchers, then both sides by settled claims.
    let n = 2_000u64;
    let before = disk_bytes(&data("leipzig")?);
    let mut office = OfficeClient::new(bench.leipzig_office.clone());
    let valid_from = Day::today()
        .checked_add_days(-(SETTLE_DAYS as i32 - 1))
        .ok_or("date out of range")?;
    let mut codes = Vec::new();
    for _ in 0..n {
        let voucher = office
            .issue_voucher(IssueVoucherRequest {
                valid_from: Some(valid_from.into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        codes.push(voucher.full_code);
    }
    let per_voucher = disk_bytes(&data("leipzig")?).saturating_sub(before) as f64 / n as f64;
    let (issuer_before, redeemer_before) =
        (disk_bytes(&data("leipzig")?), disk_bytes(&data("dresden")?));
    let mut provider = ProviderClient::new(bench.dresden_provider.clone());
    for i in 0..n {
        let request = claim(&codes, i).ok_or("too few vouchers")?;
        let answer = provider.submit_claim(request).await?.into_inner();
        if answer.state() != ClaimState::Settled {
            return Err(format!("claim {i} not settled: {}", answer.message).into());
        }
    }
    let issuer = disk_bytes(&data("leipzig")?).saturating_sub(issuer_before) as f64 / n as f64;
    let redeemer = disk_bytes(&data("dresden")?).saturating_sub(redeemer_before) as f64 / n as f64;
    println!("  storage per issued voucher      {per_voucher:>10.0} bytes (issuer)");
    println!(
        "  storage per settled claim       {issuer:>10.0} bytes at the issuer, {redeemer:.0} at the redeemer"
    );

    let count = std::env::var("SCHEIN_BENCH_VOUCHERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000u64);
    let dir = tempfile::tempdir()?;
    let (created, config) = common::lone_node(dir.path())?;
    let identity = IdentityFile::load(&created.office_identity_path)?;

    // Idle for a second, then read its memory, and stop it before its store is opened again.
    let idle = |mut node: NodeProcess| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let measured = (node.rss_kib()?, node.served_after);
        node.child.kill().await?;
        Ok::<_, Error>(measured)
    };
    let (rss, ready) = idle(NodeProcess::start(&created.config_path, &identity).await?).await?;
    println!(
        "  idle node, empty store          {:>10.1} MiB RSS, serving after {:.0} ms",
        rss as f64 / 1024.0,
        ready * 1e3
    );
    let fill = Instant::now();
    fill_vouchers(&config, count).await?;
    let filled = fill.elapsed().as_secs_f64();
    let size = disk_bytes(&config.data_dir);
    let (rss, ready) = idle(NodeProcess::start(&created.config_path, &identity).await?).await?;
    println!(
        "  idle node, {count} vouchers {:>10.1} MiB RSS, serving after {:.0} ms (store {:.0} MiB, {:.0} bytes/voucher, filled in {filled:.0} s)",
        rss as f64 / 1024.0,
        ready * 1e3,
        size as f64 / 1048576.0,
        size as f64 / count as f64,
    );
    Ok(())
}

/// Issues `count` vouchers straight into the store (signed, as the office would), flushing once.
async fn fill_vouchers(config: &Config, count: u64) -> Result<(), Error> {
    let store = Store::open_for_bulk_load(&config.data_dir)?;
    let today = Day::today();
    let until = today.checked_add_days(90).ok_or("date out of range")?;
    for _ in 0..count {
        store
            .issue(&common::voucher(config, today, until, 50_000), today)
            .await?;
    }
    store.flush().await?;
    Ok(())
}

/// The issuer's settle transaction alone, without network: 1 and 64 concurrent settles on one
/// store with durable group commit.
async fn store_settle(secs: f64) -> Result<(), Error> {
    use schein_proto::v1::SettlementRecord;
    use sha2::Digest;
    println!("\nstore: the issuer's settle transaction alone (durable, group commit)");
    let dir = tempfile::tempdir()?;
    let (_, config) = common::lone_node(dir.path())?;
    let store = Store::open(&config.data_dir)?;
    let key_id = schein_proto::KeyId::of(&config.signing_key.verifying_key()).0;
    let sign = Arc::new(common::receipt_signer(&config.signing_key));
    let today = Day::today();
    let month = today.month().unwrap_or_default();
    let mut vouchers = Vec::new();
    for _ in 0..256 {
        let voucher = common::voucher(&config, today, today, 10_000_000);
        store.issue(&voucher, today).await?;
        let serial = voucher.decode_own()?.serial;
        vouchers.push((serial, sha2::Sha256::digest(voucher.to_bytes()).to_vec()));
    }
    let vouchers = Arc::new(vouchers);
    for in_flight in [1, CONCURRENT] {
        let (store, vouchers, sign, key_id) = (
            store.clone(),
            vouchers.clone(),
            sign.clone(),
            key_id.clone(),
        );
        let stats = closed_loop(in_flight, secs, move |n| {
            let (store, vouchers, sign, key_id) = (
                store.clone(),
                vouchers.clone(),
                sign.clone(),
                key_id.clone(),
            );
            async move {
                let (serial, hash) = &vouchers[n as usize % vouchers.len()];
                let record = SettlementRecord {
                    claim_id: format!("{in_flight}-{n}"),
                    serial: serial.as_bytes().to_vec(),
                    issuer: "leipzig".into(),
                    amount_cents: 1,
                    category: Category::Treatment as i32,
                    service_month: month,
                    redeemer: "dresden".into(),
                    key_id: key_id.clone(),
                    voucher_hash: hash.clone(),
                    accepted_on: Some(today.into()),
                    served_before_revocation: false,
                };
                store
                    .settle("leipzig", &record, today, common::CEILINGS, move |r| {
                        sign(r)
                    })
                    .await
                    .is_ok()
            }
        })
        .await;
        println!(
            "  {in_flight:>2} in flight   {:>8.0} settles/s   p50 {:>7.0} µs  p99 {:>7.0} µs",
            stats.rate, stats.p50, stats.p99
        );
    }
    Ok(())
}
