//! A federation of several nodes in one process, on loopback, with fresh keys and certificates
//! in one directory: what `schein demo` runs and what the integration tests are built on.
//!
//! Listeners are bound to `127.0.0.1:0` before the nodes are created, so each node's endpoint
//! is known when its certificate and member entry are made, and no port is ever raced for.
//! [`DirectNode`] is a node without any of that, whose handlers are called in-process.

pub mod books;
mod direct;

pub use direct::{DIRECT_NODE_ID, DirectNode, Rpc};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::client::IdentityFile;
use crate::config::Config;
use crate::init::{InitOptions, SetupError, enroll, init};
use crate::pki::Role;
use crate::roster::{MemberEntry, Roster};
use crate::server::{RunError, RunningNode};

/// One city of a local federation.
#[derive(Clone, Debug)]
pub struct City {
    pub id: &'static str,
    pub name: &'static str,
    pub prefix: &'static str,
}

/// Leipzig, Dresden and Chemnitz: the initiatives that proposed the network.
pub const SAXONY: [City; 3] = [
    City {
        id: "leipzig",
        name: "Leipzig",
        prefix: "LEJ",
    },
    City {
        id: "dresden",
        name: "Dresden",
        prefix: "DRS",
    },
    City {
        id: "chemnitz",
        name: "Chemnitz",
        prefix: "CHE",
    },
];

/// Why a local federation could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot bind a loopback port: {0}")]
    Bind(std::io::Error),
    #[error("no node '{0}' in this federation")]
    NoSuchNode(String),
    #[error("node '{0}' is not running")]
    NotRunning(String),
    #[error("node '{0}' is running already")]
    AlreadyRunning(String),
}

/// One node of a local federation.
#[derive(Debug)]
pub struct LocalNode {
    pub city: City,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// Settings over the configuration file, as `SCHEIN_*` variables would give them (setting
    /// name in lower case, value).
    pub settings: Vec<(String, String)>,
    running: Option<RunningNode>,
}

impl LocalNode {
    /// Where its web console listens, while it runs with one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.control.web_addr)
    }

    /// Where its metrics and health are served, while it runs with them.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.control.metrics_addr)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(crate::config::CONFIG_FILE)
    }

    pub fn config(&self) -> Result<Config, LocalError> {
        Ok(
            Config::load_with_env(&self.config_path(), self.settings.clone())
                .map_err(SetupError::from)?,
        )
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

/// Several nodes in one process.
#[derive(Debug)]
pub struct LocalFederation {
    pub dir: PathBuf,
    pub nodes: Vec<LocalNode>,
}

impl LocalFederation {
    /// Creates a node per city under `dir`, gives every node every member entry, and starts
    /// them all.
    pub async fn start(dir: &Path, cities: &[City]) -> Result<Self, LocalError> {
        Self::start_with(dir, cities, &[]).await
    }

    /// As [`Self::start`], with `settings` (name in lower case, value) over every node's
    /// configuration file, kept across restarts.
    pub async fn start_with(
        dir: &Path,
        cities: &[City],
        settings: &[(&str, &str)],
    ) -> Result<Self, LocalError> {
        let (mut federation, listeners) = Self::prepare(dir, cities).await?;
        for node in &mut federation.nodes {
            // Several nodes on one machine: each its own metrics port, unless told otherwise.
            node.settings = [("metrics_listen", "127.0.0.1:0")]
                .iter()
                .chain(settings)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        }
        for (i, listener) in listeners.into_iter().enumerate() {
            let config = federation.nodes[i].config()?;
            federation.nodes[i].running = Some(RunningNode::start(config, listener).await?);
        }
        Ok(federation)
    }

    /// Creates the nodes as [`Self::start`] does but runs none of them: for callers that run
    /// each node as a `schein-node` process of its own (the benchmarks). The ports were free
    /// when the nodes were made.
    pub async fn create(dir: &Path, cities: &[City]) -> Result<Self, LocalError> {
        Ok(Self::prepare(dir, cities).await?.0)
    }

    /// Binds a port per city, creates the nodes on them, and exchanges member entries.
    async fn prepare(dir: &Path, cities: &[City]) -> Result<(Self, Vec<TcpListener>), LocalError> {
        let mut listeners = Vec::new();
        for _ in cities {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(LocalError::Bind)?,
            );
        }
        let mut nodes = Vec::new();
        for (city, listener) in cities.iter().zip(&listeners) {
            let addr = listener.local_addr().map_err(LocalError::Bind)?;
            let node_dir = dir.join(city.id);
            init(&InitOptions {
                dir: node_dir.clone(),
                node_id: city.id.into(),
                name: city.name.into(),
                prefix: city.prefix.into(),
                listen: addr.to_string(),
                endpoint: format!("https://127.0.0.1:{}", addr.port()),
                web_listen: None,
                // So that a browser can open the node's web console as `localhost`.
                hostnames: vec!["localhost".into()],
                office_name: "office".into(),
            })?;
            nodes.push(LocalNode {
                city: city.clone(),
                dir: node_dir,
                addr,
                settings: Vec::new(),
                running: None,
            });
        }
        let federation = Self {
            dir: dir.to_path_buf(),
            nodes,
        };
        federation.exchange_member_entries()?;
        Ok((federation, listeners))
    }

    /// What operators do by hand: each node's roster gets every other node's member entry.
    fn exchange_member_entries(&self) -> Result<(), LocalError> {
        let entries = self
            .nodes
            .iter()
            .map(|n| MemberEntry::load(&n.dir.join(crate::init::MEMBER_FILE)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::from)?;
        for node in &self.nodes {
            let path = node.dir.join("roster.toml");
            let mut roster = Roster::load(&path).map_err(SetupError::from)?;
            for entry in &entries {
                roster = roster.upsert(entry.clone()).map_err(SetupError::from)?.0;
            }
            roster.save(&path).map_err(SetupError::from)?;
        }
        Ok(())
    }

    pub fn node(&self, id: &str) -> Result<&LocalNode, LocalError> {
        self.nodes
            .iter()
            .find(|n| n.city.id == id)
            .ok_or_else(|| LocalError::NoSuchNode(id.to_owned()))
    }

    fn node_mut(&mut self, id: &str) -> Result<&mut LocalNode, LocalError> {
        self.nodes
            .iter_mut()
            .find(|n| n.city.id == id)
            .ok_or_else(|| LocalError::NoSuchNode(id.to_owned()))
    }

    /// The first office identity `init` made for node `id`.
    pub fn office(&self, id: &str) -> Result<IdentityFile, LocalError> {
        let path = self.node(id)?.dir.join("identities/office-office.toml");
        Ok(IdentityFile::load(&path).map_err(SetupError::from)?)
    }

    /// Enrolls a new identity at node `id` and returns it (also written into the node's
    /// `identities/` directory).
    pub fn enroll(&self, id: &str, role: Role, name: &str) -> Result<IdentityFile, LocalError> {
        let node = self.node(id)?;
        let config = node.config()?;
        let path = node
            .dir
            .join("identities")
            .join(format!("{role}-{name}.toml"));
        Ok(enroll(&config, role, name, 30, &path)?)
    }

    /// Writes `roster` as node `id`'s roster and puts it in force, as `roster add` and SIGHUP do.
    pub fn replace_roster(&self, id: &str, roster: Roster) -> Result<(), LocalError> {
        let node = self.node(id)?;
        roster
            .save(&node.dir.join("roster.toml"))
            .map_err(SetupError::from)?;
        let running = node
            .running
            .as_ref()
            .ok_or_else(|| LocalError::NotRunning(id.to_owned()))?;
        running
            .control
            .replace_roster(roster)
            .map_err(|e| LocalError::Run(RunError::Tls(e)))?;
        Ok(())
    }

    /// Stops node `id` gracefully.
    pub async fn stop(&mut self, id: &str) -> Result<(), LocalError> {
        let node = self.node_mut(id)?;
        let running = node
            .running
            .take()
            .ok_or_else(|| LocalError::NotRunning(id.to_owned()))?;
        running.shutdown().await?;
        Ok(())
    }

    /// Starts node `id` again on its old port and data.
    pub async fn restart(&mut self, id: &str) -> Result<(), LocalError> {
        let node = self.node_mut(id)?;
        if node.running.is_some() {
            return Err(LocalError::AlreadyRunning(id.to_owned()));
        }
        let config = node.config()?;
        // A stopped node's store may still be closing on a blocking thread; wait for its lock.
        let mut attempt = 0;
        let running = loop {
            let listener = TcpListener::bind(node.addr)
                .await
                .map_err(LocalError::Bind)?;
            match RunningNode::start(config.clone(), listener).await {
                Ok(running) => break running,
                Err(RunError::Store { .. }) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(other) => return Err(other.into()),
            }
        };
        node.running = Some(running);
        Ok(())
    }

    /// Stops every running node gracefully.
    pub async fn shutdown(mut self) -> Result<(), LocalError> {
        for node in &mut self.nodes {
            if let Some(running) = node.running.take() {
                running.shutdown().await?;
            }
        }
        Ok(())
    }
}
