//! Every request a node accepts, decoded from arbitrary bytes and handed to the real handlers.
//!
//! The first byte selects the RPC ([`Rpc::from_selector`]), the rest is its request message in
//! protobuf. One node is built per process, alone in its roster so that nothing waits for the
//! network, and called with an identity of the role each service expects. Its store lives on
//! across inputs, so an input that leaves bad state behind shows up in later ones.
//!
//! Properties: a handler answers or refuses with a message and a code that blames the request
//! (never INTERNAL or UNKNOWN), never panics; after every input the node still shows its first
//! voucher, and its ledger's chain and signed head check out.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use schein_node::local::{DirectNode, Rpc};
use tokio::runtime::Runtime;

struct Harness {
    runtime: Runtime,
    node: DirectNode,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = node_dir();
    let node = runtime.block_on(DirectNode::create(&dir)).expect("a node");
    Harness { runtime, node }
});

const DIR_PREFIX: &str = "schein-fuzz-requests-";

/// A fresh directory for this process's node, memory-backed if possible since the store
/// flushes after every change. A static is never dropped and libFuzzer ends the process with
/// `exit`, so no guard can remove the directory; instead each run removes those of runs whose
/// process is gone.
fn node_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    // Whether a process is gone is read from /proc; without it nothing is removed.
    let procfs = Path::new("/proc/self").exists();
    if let Ok(entries) = std::fs::read_dir(&base).map(|e| e.filter(|_| procfs)) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX));
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let harness = &*HARNESS;
    let rpc = Rpc::from_selector(selector);
    harness.runtime.block_on(async {
        if let Ok(Err(status)) = harness.node.call(rpc, message).await {
            assert!(
                !status.message().is_empty(),
                "{rpc:?} refused without a message: {status:?}"
            );
            assert!(
                !matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown),
                "{rpc:?} refused as a fault of the node: {status:?}"
            );
        }
        // `#1` is the short code of a voucher issued at start: it can be revoked, but it can
        // always be shown. An empty ledger request reads from the start.
        let show = prost::Message::encode_to_vec(&schein_proto::v1::ShowVoucherRequest {
            code: "#1".into(),
        });
        let shown = harness.node.call(Rpc::ShowVoucher, &show).await;
        assert!(matches!(shown, Ok(Ok(()))), "after {rpc:?}: {shown:?}");
        let ledger = harness.node.checked_ledger().await;
        assert!(ledger.is_ok(), "after {rpc:?}: {ledger:?}");
    });
});
