//! A TCP proxy between two nodes that can be switched to a blackhole: it then accepts and holds
//! connections but forwards nothing, as a dropped route or a silent firewall does. Unlike a
//! stopped process (connection refused at once), a blackhole makes the caller wait for its
//! timeouts, which is the harder case for the redeeming node's settlement path.
//!
//! Healing closes every held connection, so that callers reconnect instead of waiting on a
//! stream whose bytes were swallowed.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    blackhole: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (blackhole, mode) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(carry(client, target, mode.clone()));
            }
        });
        Ok(Self {
            addr,
            blackhole,
            task,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// From now on nothing gets through; open connections go silent.
    pub fn blackhole(&self) {
        self.blackhole.send_replace(true);
    }

    /// Forwards again; connections held while blackholed are closed.
    pub fn heal(&self) {
        self.blackhole.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the proxy forwards again.
async fn until_healed(mode: &mut watch::Receiver<bool>) {
    let _ = mode.wait_for(|blackholed| !blackholed).await;
}

/// Waits until the proxy is blackholed.
async fn until_blackholed(mode: &mut watch::Receiver<bool>) {
    if mode.wait_for(|blackholed| *blackholed).await.is_err() {
        // The proxy is gone: never blackholed again.
        std::future::pending::<()>().await;
    }
}

/// One connection: forwarded while the proxy forwards, held silently while it is blackholed.
async fn carry(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<bool>) {
    if *mode.borrow_and_update() {
        until_healed(&mut mode).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            let _ = client.shutdown().await;
        }
        () = until_blackholed(&mut mode) => {
            // Hold both ends open, forwarding nothing, until healed; then close them.
            until_healed(&mut mode).await;
        }
    }
}
