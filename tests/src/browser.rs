//! Browser tests' machinery: what a test needs to drive a real headless Chromium through the
//! Node scripts in `tests/browser/`.
//!
//! A browser test never skips: on a machine without Chromium it installs Debian's `chromium`
//! package (as root, the way CI and developers' machines run), and without `node_modules` it
//! runs `npm ci` from the committed lock file. Both happen once per machine, under a file lock,
//! because test binaries run at the same time and apt or npm twice at once would break each
//! other. If either fails, the test fails with the reason.
//!
//! The scripts import `tests/browser/lib.mjs` (launch, contexts with a client certificate,
//! screenshots, axe, QR decoding) and print one JSON line of results at the end, which
//! [`run_script`] returns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use fs2::FileExt;
use tokio::io::AsyncReadExt;

/// Debian's Chromium, the browser every script drives (`lib.mjs` names the same path).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one script may run before it is killed and its test fails.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Debian's packages for the browser: fonts too, since `--no-install-recommends` leaves them
/// out and screenshots of a machine without fonts show boxes instead of text.
const CHROMIUM_PACKAGES: [&str; 2] = ["chromium", "fonts-liberation"];

/// The npm project with the scripts and their pinned packages.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Makes sure Chromium is installed, installing it with apt if it is not; once per process,
/// and under a machine-wide lock so that concurrent test binaries run apt one at a time.
pub fn ensure_chromium() -> anyhow::Result<()> {
    static DONE: OnceLock<Mutex<bool>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(|| Mutex::new(false))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    let _lock = SetupLock::acquire()?;
    if !Path::new(CHROMIUM).is_file() {
        install_chromium().context(
            "Chromium is missing and could not be installed; browser tests need it \
             (as root: apt-get install chromium)",
        )?;
        if !Path::new(CHROMIUM).is_file() {
            bail!("apt-get installed {CHROMIUM_PACKAGES:?}, but {CHROMIUM} is still missing");
        }
    }
    *done = true;
    Ok(())
}

/// `apt-get install`, and if that fails (no package lists yet, or stale ones that name files
/// the mirror no longer has), `apt-get update` and once more.
fn install_chromium() -> anyhow::Result<()> {
    eprintln!("installing {CHROMIUM_PACKAGES:?} with apt-get: {CHROMIUM} is missing");
    if apt(
        &["install", "-y", "--no-install-recommends"],
        &CHROMIUM_PACKAGES,
    )
    .is_ok()
    {
        return Ok(());
    }
    apt(&["update"], &[])?;
    apt(
        &["install", "-y", "--no-install-recommends"],
        &CHROMIUM_PACKAGES,
    )
}

fn apt(args: &[&str], packages: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        // Wait for another apt or dpkg (an unattended upgrade, another session) instead of
        // failing at once on its lock.
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .args(packages)
        .stdin(Stdio::null())
        .output()
        .context("running apt-get")?;
    if !output.status.success() {
        bail!(
            "apt-get {} {} failed ({}):\n{}",
            args.join(" "),
            packages.join(" "),
            output.status,
            both_streams(&output)
        );
    }
    Ok(())
}

/// Makes sure `tests/browser/node_modules` matches `package-lock.json`, running `npm ci` if it
/// is missing or older than the lock file; once per process, under the same lock as apt.
pub fn ensure_npm() -> anyhow::Result<()> {
    static DONE: OnceLock<Mutex<bool>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(|| Mutex::new(false))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    let _lock = SetupLock::acquire()?;
    let dir = browser_dir();
    let lock_file = dir.join("package-lock.json");
    // npm writes this copy of the lock file into node_modules at each install: its age is the
    // age of the installation (the directory's own mtime changes only when entries do).
    let installed = dir.join("node_modules/.package-lock.json");
    let locked =
        modified(&lock_file)?.ok_or_else(|| anyhow!("{} is missing", lock_file.display()))?;
    if modified(&installed)?.is_none_or(|installed| installed < locked) {
        eprintln!("npm ci in {}", dir.display());
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .context("running npm (browser tests need Node.js 20 and npm)")?;
        if !output.status.success() {
            bail!(
                "npm ci in {} failed ({}):\n{}",
                dir.display(),
                output.status,
                both_streams(&output)
            );
        }
    }
    *done = true;
    Ok(())
}

fn modified(path: &Path) -> anyhow::Result<Option<SystemTime>> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.modified()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Chromium and Playwright installed and their versions printed (once per process).
fn ensure_ready() -> anyhow::Result<()> {
    ensure_chromium()?;
    ensure_npm()?;
    static VERSIONS: OnceLock<()> = OnceLock::new();
    VERSIONS.get_or_init(|| eprintln!("browser tests: {}", versions()));
    Ok(())
}

/// "Chromium 148.… / playwright-core 1.…", or what could not be found out.
fn versions() -> String {
    let chromium = Command::new(CHROMIUM)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "chromium (version unknown)".to_owned());
    let manifest = browser_dir().join("node_modules/playwright-core/package.json");
    let playwright = std::fs::read(&manifest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("version")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{chromium}, playwright-core {playwright}")
}

/// Runs `node <script>` in `tests/browser/` with `env` added to the test's environment and
/// returns the JSON of the last line it printed.
///
/// Installs Chromium and the npm packages first if needed. The script is killed after
/// [`SCRIPT_TIMEOUT`]; a non-zero exit, a timeout or a last line that is not JSON fails with
/// everything the script printed. `script` is relative to `tests/browser/` (or absolute).
///
/// Screenshots go to `SCHEIN_SCREENSHOTS`: the caller's value if it passes one, else
/// [`screenshot_dir`] of the script's name.
///
/// A script that opens a server with a private CA while presenting a client certificate needs
/// `NODE_EXTRA_CA_CERTS` (a PEM file) in `env`: Playwright's client-certificate proxy, not the
/// browser, checks that server, with Node's trust store, which Node reads only at start.
pub async fn run_script(
    script: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<serde_json::Value> {
    tokio::task::spawn_blocking(ensure_ready)
        .await
        .context("browser setup panicked")??;
    let dir = browser_dir();
    let script = dir.join(script);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Killed on timeout, and also if the test gives up on the future. Chromium, in a
        // process group of its own, ends when its DevTools pipe to the dead script closes
        // (tried: after a SIGKILL of node no Chromium process is left).
        .kill_on_drop(true);
    if !env.iter().any(|(k, _)| *k == "SCHEIN_SCREENSHOTS") {
        let stem = script
            .file_stem()
            .ok_or_else(|| anyhow!("{} names no file", script.display()))?;
        command.env(
            "SCHEIN_SCREENSHOTS",
            screenshot_dir(&stem.to_string_lossy())?,
        );
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting node {}", script.display()))?;
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => {
            Some(status.with_context(|| format!("waiting for node {}", script.display()))?)
        }
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    // What the script printed, also when it was killed: that is where it shows how far it got.
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: rest_of(stdout).await,
        stderr: rest_of(stderr).await,
    };
    if status.is_none() {
        bail!(
            "node {} did not finish within {SCRIPT_TIMEOUT:?} and was killed:\n{}",
            script.display(),
            both_streams(&output)
        );
    }
    if !output.status.success() {
        bail!(
            "node {} failed ({}):\n{}",
            script.display(),
            output.status,
            both_streams(&output)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(last).with_context(|| {
        format!(
            "the last line of node {} is not JSON:\n{}",
            script.display(),
            both_streams(&output)
        )
    })
}

/// Everything a pipe of the script gives until it closes.
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes).await;
    }
    bytes
}

/// The rest of a pipe once the script has ended; a few seconds at most, since a process it
/// left behind could hold the pipe open.
async fn rest_of(reader: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(bytes)) => bytes,
        _ => b"(nothing: the pipe stayed open)".to_vec(),
    }
}

/// A directory for the screenshots of `name`, beside the test binaries
/// (`target/debug/screenshots/NAME`), emptied first so that it shows only the latest run.
pub fn screenshot_dir(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("where is the test executable")?;
    // target/debug/deps/<test> → target/debug
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        anyhow!(
            "the test executable {} is not in a target dir",
            exe.display()
        )
    })?;
    let dir = profile_dir.join("screenshots").join(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn both_streams(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

/// An exclusive lock on one file in the temporary directory, held while apt or npm runs;
/// released when dropped (or when the process dies, since it is an `flock`).
struct SetupLock(File);

impl SetupLock {
    fn acquire() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join("schein-browser-setup.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock_exclusive()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Self(file))
    }
}

impl Drop for SetupLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.0);
    }
}
