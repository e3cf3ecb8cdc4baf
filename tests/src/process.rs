//! Real `schein-node` processes for the hard-failure tests: nodes created with `init` in a
//! temporary directory, members exchanged between their rosters as operators do, started as
//! `schein-node run`, killed with SIGKILL and started again on the same port and data.
//!
//! Only processes are ever killed here, never a node inside the test process: sled's
//! process-wide IO pool does not survive a node being dropped mid-write in the same process.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use schein_node::client::IdentityFile;
use schein_node::config::{CONFIG_FILE, Config};
use schein_node::init::{InitOptions, MEMBER_FILE, enroll, init};
use schein_node::pki::{NodeCa, Role};
use schein_node::roster::{MemberEntry, Roster};
use schein_proto::v1::ListVouchersRequest;
use schein_proto::v1::office_client::OfficeClient;

/// The `schein-node` binary next to the running test executable, built if it is missing or
/// older than the sources it is built from: a stale binary would silently test old code.
///
/// `cargo test --workspace` builds it already; `cargo test -p schein-tests` does not, and
/// `CARGO_BIN_EXE_schein-node` exists only for the tests of the `schein-node` package.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    fresh_binary(&BUILT, "schein-node", "schein-node", &["node"])
}

/// The `schein` CLI binary, as [`node_binary`] finds or builds the node's.
pub fn cli_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    fresh_binary(&BUILT, "schein-cli", "schein", &["cli", "node"])
}

/// The binary `name` of `package` in the test's target directory, rebuilt if it is missing or
/// older than the sources of `crates` (and of the protocol and the lock file); once per process.
fn fresh_binary(
    built: &OnceLock<Mutex<Option<PathBuf>>>,
    package: &str,
    name: &str,
    crates: &[&str],
) -> anyhow::Result<PathBuf> {
    let mut built = built
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("where is the test executable")?;
    // target/debug/deps/<test> → target/debug
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        anyhow!(
            "the test executable {} is not in a target dir",
            exe.display()
        )
    })?;
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built_at = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let newest_source = newest_source(crates)?;
    if built_at.is_none_or(|built_at| built_at < newest_source) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target_dir = profile_dir
            .parent()
            .ok_or_else(|| anyhow!("no target dir above {}", profile_dir.display()))?;
        eprintln!("building {name}: the binary is missing or older than its sources");
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name, "--target-dir"])
            .arg(target_dir)
            .status()
            .with_context(|| format!("running cargo build for {name}"))?;
        if !status.success() || !binary.is_file() {
            bail!("cargo build of {name} failed ({status})");
        }
    }
    *built = Some(binary.clone());
    Ok(binary)
}

/// When the newest source file of a binary was changed: the `crates` it is built from, the
/// protocol crate and the lock file.
fn newest_source(crates: &[&str]) -> anyhow::Result<std::time::SystemTime> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut pending: Vec<PathBuf> = crates
        .iter()
        .flat_map(|c| [format!("{c}/src"), format!("{c}/Cargo.toml")])
        .chain(["proto".to_owned(), "Cargo.lock".to_owned()])
        .map(|p| workspace.join(p))
        .collect();
    while let Some(path) = pending.pop() {
        let metadata =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        } else {
            newest = newest.max(metadata.modified()?);
        }
    }
    Ok(newest)
}

/// A loopback port that was free a moment ago. A node process binds it itself, so there is a
/// short window in which another program could take it; tests on one machine live with that.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One node: its directory made by `init`, and its process while it runs.
#[derive(Debug)]
pub struct NodeProcess {
    pub id: String,
    pub dir: PathBuf,
    pub port: u16,
    /// Extra `SCHEIN_*` settings for the process (e.g. `SCHEIN_PEER_TIMEOUT_MS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    /// Everything the process wrote, across restarts.
    log_path: PathBuf,
    /// How many times the process was started.
    pub starts: u32,
}

impl NodeProcess {
    /// The node's endpoint as its own clients reach it.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load_with_env(&self.dir.join(CONFIG_FILE), [])?)
    }

    pub fn roster_path(&self) -> PathBuf {
        self.dir.join("roster.toml")
    }

    /// The office identity `init` made.
    pub fn office(&self) -> anyhow::Result<IdentityFile> {
        Ok(IdentityFile::load(
            &self.dir.join("identities/office-office.toml"),
        )?)
    }

    /// A new identity of this node, written into its `identities/` directory.
    pub fn enroll(&self, role: Role, name: &str) -> anyhow::Result<IdentityFile> {
        let path = self.dir.join(format!("identities/{role}-{name}.toml"));
        Ok(enroll(&self.config()?, role, name, 30, &path)?)
    }

    /// The node's CA, to make certificates the way its operator could.
    pub fn ca(&self) -> anyhow::Result<NodeCa> {
        let cert = std::fs::read_to_string(self.dir.join("keys/ca.pem"))?;
        let key = std::fs::read_to_string(self.dir.join("keys/ca.key"))?;
        Ok(NodeCa::load(&self.id, &cert, &key)?)
    }

    /// This node's own node certificate as a client identity aimed at `at`: what it presents
    /// when it calls `at`'s federation service.
    pub fn node_identity_at(&self, at: &NodeProcess) -> anyhow::Result<IdentityFile> {
        let target = at.office()?;
        Ok(IdentityFile {
            role: Role::Node,
            name: self.id.clone(),
            certificate: std::fs::read_to_string(self.dir.join("keys/node.pem"))?,
            private_key: std::fs::read_to_string(self.dir.join("keys/node.key"))?,
            ..target
        })
    }

    /// Starts `schein-node run`; its output is appended to the node's log.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("node {} is running already", self.id);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(node_binary()?);
        command
            .current_dir(&self.dir)
            .env_remove("SCHEIN_NODE_CONFIG")
            // Plain log lines, so that tests can search them.
            .env("NO_COLOR", "1")
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Only the settings this node is meant to have, not whatever the test runner has.
        for (key, _) in std::env::vars() {
            if key.starts_with("SCHEIN_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.child = Some(command.spawn().context("starting schein-node")?);
        self.starts += 1;
        Ok(())
    }

    /// SIGSTOP: the process stays, the kernel still accepts its connections, nothing answers —
    /// what a disk stall or a swapped-out machine looks like to the others.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&mut self, signal: &str) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node {} is not running", self.id))?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {signal} {} failed ({status})", self.id);
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, no chance to finish anything.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Whether the process was started and has not ended.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails if the process ended on its own (a crash, a panic, a refused start).
    pub fn assert_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "node {} ended by itself ({status}); its log:\n{}",
                self.id,
                self.log()
            );
        }
        Ok(())
    }

    /// Everything the node logged so far, colour codes removed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the node's log has more than `after` lines containing every one of
    /// `needles`; returns those lines. The node writes its log as it goes, so a refusal may
    /// land a moment after the client saw it.
    pub async fn wait_for_log(
        &self,
        after: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.log_lines(needles);
            if lines.len() > after {
                return Ok(lines);
            }
            if Instant::now() > deadline {
                bail!(
                    "node {}: no new log line with {needles:?} within {timeout:?}; the log:\n{}",
                    self.id,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The log lines containing every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the node answers an office call over mutual TLS (a connect alone proves
    /// nothing under TLS 1.3); fails early if the process ended.
    pub async fn ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let office = self.office()?;
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_alive()?;
            // Bounded: a node that accepts connections but never answers must not hang us.
            let answered = tokio::time::timeout(Duration::from_secs(5), async {
                let channel = office.connect(None).await.ok()?;
                OfficeClient::new(channel)
                    .list_vouchers(ListVouchersRequest {
                        limit: 1,
                        ..Default::default()
                    })
                    .await
                    .ok()
            })
            .await;
            if matches!(answered, Ok(Some(_))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not serve within {timeout:?}; its log:\n{}",
                    self.id,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // Never leave a node running after its test, also when the test failed.
        let _ = self.kill();
    }
}

/// Several node processes made by `init` in one temporary directory, every node's member
/// entry in every roster. Nothing runs until [`NodeProcess::start`].
#[derive(Debug)]
pub struct ProcessFederation {
    pub nodes: Vec<NodeProcess>,
    // Dropped last: the nodes (killed on drop) live in it.
    pub dir: tempfile::TempDir,
}

impl ProcessFederation {
    /// Creates one node per `(id, display name, prefix)` and exchanges their member entries.
    pub fn create(cities: &[(&str, &str, &str)]) -> anyhow::Result<Self> {
        crate::init_tracing();
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for &(id, name, prefix) in cities {
            nodes.push(init_node(dir.path(), id, name, prefix)?);
        }
        let entries = nodes
            .iter()
            .map(|n| MemberEntry::load(&n.dir.join(MEMBER_FILE)))
            .collect::<Result<Vec<_>, _>>()?;
        for node in &nodes {
            let mut roster = Roster::load(&node.roster_path())?;
            for entry in &entries {
                roster = roster.upsert(entry.clone())?.0;
            }
            roster.save(&node.roster_path())?;
        }
        Ok(Self { nodes, dir })
    }

    /// Makes another node, as a city that wants to join does: its roster names only itself,
    /// and no member's roster names it. Nothing runs until it is started.
    pub fn create_outsider(&mut self, id: &str, name: &str, prefix: &str) -> anyhow::Result<()> {
        let node = init_node(self.dir.path(), id, name, prefix)?;
        self.nodes.push(node);
        Ok(())
    }

    pub fn node(&self, id: &str) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn node_mut(&mut self, id: &str) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// In node `at`'s roster, reach member `member` at `endpoint` (say, through a proxy). The
    /// TLS name stays the member's id; only where the bytes go changes. Takes effect when `at`
    /// starts.
    pub fn set_endpoint(&self, at: &str, member: &str, endpoint: &str) -> anyhow::Result<()> {
        let path = self.node(at).roster_path();
        let roster = Roster::load(&path)?;
        let mut entry = roster
            .member(member)
            .ok_or_else(|| anyhow!("{member} is not in {at}'s roster"))?
            .entry
            .clone();
        entry.endpoint = Some(endpoint.to_owned());
        roster.upsert(entry)?.0.save(&path)?;
        Ok(())
    }

    /// Leipzig and Dresden, the pair most process tests need.
    pub fn leipzig_and_dresden() -> anyhow::Result<Self> {
        Self::create(&[("leipzig", "Leipzig", "LEJ"), ("dresden", "Dresden", "DRS")])
    }

    /// Starts node `id` alone and waits until it serves.
    pub async fn start_one(&mut self, id: &str) -> anyhow::Result<()> {
        let node = self.node_mut(id);
        node.start()?;
        node.ready(Duration::from_secs(60)).await
    }

    /// Starts every node and waits until each serves.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.start()?;
        }
        for node in &mut self.nodes {
            node.ready(Duration::from_secs(60)).await?;
        }
        Ok(())
    }
}

/// `init` of one node in `dir/id` on a free port.
fn init_node(dir: &Path, id: &str, name: &str, prefix: &str) -> anyhow::Result<NodeProcess> {
    let port = free_port()?;
    let node_dir = dir.join(id);
    init(&InitOptions {
        dir: node_dir.clone(),
        node_id: id.into(),
        name: name.into(),
        prefix: prefix.into(),
        listen: format!("127.0.0.1:{port}"),
        endpoint: format!("https://127.0.0.1:{port}"),
        web_listen: None,
        // The web console's browser tests reach the nodes as `localhost`.
        hostnames: vec!["localhost".into()],
        office_name: "office".into(),
    })?;
    Ok(NodeProcess {
        id: id.into(),
        log_path: node_dir.join("node.log"),
        dir: node_dir,
        port,
        // Generous, so that "settled at once" does not depend on the machine's load; a killed
        // node refuses connections at once. Tests of slow peers set their own.
        env: vec![(
            "SCHEIN_PEER_TIMEOUT_MS".into(),
            crate::TEST_PEER_TIMEOUT_MS.into(),
        )],
        child: None,
        starts: 0,
    })
}

/// Runs the `schein` binary with `identity` (saved into `dir` the first time) and `args`; its
/// output and how long it took. A run longer than a minute fails the test instead of hanging it.
pub async fn schein(
    identity: &IdentityFile,
    dir: &Path,
    args: &[&str],
) -> (std::process::Output, Duration) {
    let file = dir.join(format!("{}-{}.toml", identity.node, identity.name));
    if !file.exists() {
        identity
            .save_new(&file)
            .expect("the identity file is written");
    }
    let started = Instant::now();
    let run = tokio::process::Command::new(cli_binary().expect("the schein binary"))
        .env_remove("SCHEIN_IDENTITY")
        .env_remove("SCHEIN_ENDPOINT")
        .env_remove("SCHEIN_TIMEOUT")
        .arg("--identity")
        .arg(&file)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("schein ended within a minute")
        .expect("schein runs");
    (output, started.elapsed())
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
