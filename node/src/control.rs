//! The operator's local control path to a running node: a Unix socket `control.sock` in the
//! node's directory, readable and writable only by the node's own user (mode 0600). sled lets
//! one process open a store, so `schein-node backup`, `status` and `recover` ask the running
//! node through it; when no node runs they open the store themselves.
//!
//! One request per connection: a line `backup PATH`, `status` or `accept-missing PEER`; the
//! answer is `ok` or `error` on the first line, then text. Nothing here is reachable from the
//! network, and nothing carries data about a person.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::node::Node;

/// The socket's file name in the node's directory.
pub const SOCKET: &str = "control.sock";

/// Where the control socket of the node in `base_dir` is.
pub fn socket_path(base_dir: &Path) -> PathBuf {
    base_dir.join(SOCKET)
}

/// Longest request line read.
const MAX_LINE: u64 = 4096;

/// Serves the control socket until `stop` turns true.
#[cfg(unix)]
pub async fn serve(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(&node.base_dir);
    // A socket left by a killed node is in the way; a running one would hold the store's lock,
    // so this node could not have started.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "no control socket: backups of the running node are not possible");
            return;
        }
    };
    if let Err(error) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(%error, "cannot restrict the control socket to the node's user");
        drop(listener);
        let _ = std::fs::remove_file(&path);
        return;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let node = node.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer(&node, stream).await {
                            tracing::warn!(%error, "a control request failed");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "accepting on the control socket failed"),
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[cfg(not(unix))]
pub async fn serve(_node: Arc<Node>, _stop: watch::Receiver<bool>) {}

#[cfg(unix)]
async fn answer(node: &Node, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await?;
    let reply = match execute(node, line.trim_end()).await {
        Ok(text) => format!("ok\n{text}"),
        Err(text) => format!("error\n{text}\n"),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

async fn execute(node: &Node, line: &str) -> Result<String, String> {
    let (command, argument) = line.split_once(' ').unwrap_or((line, ""));
    match command {
        "backup" if !argument.is_empty() => {
            let store = node.store.clone();
            let id = node.id.clone();
            let file = PathBuf::from(argument);
            let header = tokio::task::spawn_blocking(move || store.backup(&id, &file))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            tracing::info!(
                ledger_seq = header.ledger_seq,
                entries = header.entries,
                "backup written"
            );
            Ok(format!(
                "ledger entry {}, {} entries\n",
                header.ledger_seq, header.entries
            ))
        }
        "status" => crate::domain::recovery::describe(&node.store).map_err(|e| e.to_string()),
        "accept-missing" if !argument.is_empty() => {
            match crate::domain::recovery::accept_missing(&node.store, argument).await {
                Ok(true) => {
                    tracing::warn!(
                        peer = argument,
                        "recovery gives up a peer: its receipts may be paid again"
                    );
                    Ok(String::new())
                }
                Ok(false) => Err("the node is not recovering".into()),
                Err(error) => Err(error.to_string()),
            }
        }
        _ => Err(format!("unknown request '{command}'")),
    }
}

/// Why the running node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No node listens: the caller may open the store itself.
    #[error("no running node answers at {0}")]
    NotRunning(PathBuf),
    #[error("the node refused: {0}")]
    Refused(String),
    #[error("talking to the node failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends `request` to the node in `base_dir`; its answer's text.
#[cfg(unix)]
pub async fn request(base_dir: &Path, request: &str) -> Result<String, ControlError> {
    let path = socket_path(base_dir);
    let mut stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(path));
        }
        Err(error) => return Err(error.into()),
    };
    stream.write_all(format!("{request}\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    match reply.split_once('\n') {
        Some(("ok", text)) => Ok(text.to_owned()),
        Some(("error", text)) => Err(ControlError::Refused(text.trim_end().to_owned())),
        _ => Err(ControlError::Refused(format!(
            "an unreadable answer: {reply}"
        ))),
    }
}

#[cfg(not(unix))]
pub async fn request(base_dir: &Path, _request: &str) -> Result<String, ControlError> {
    Err(ControlError::NotRunning(socket_path(base_dir)))
}
