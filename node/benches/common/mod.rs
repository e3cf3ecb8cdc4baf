//! What the benchmarks share: a lone node made for the run, and vouchers and receipts signed as
//! the node signs them.

use std::path::Path;

use ed25519_dalek::SigningKey;
use schein_node::config::Config;
use schein_node::init::{InitOptions, Initialized, init};
use schein_proto::signed::{self, Kind};
use schein_proto::v1::Receipt;
use schein_proto::voucher::new_body;
use schein_proto::{Day, KeyId, Serial, SignedVoucher};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Leipzig, alone in its roster, under `dir`, on a port free when it was made; not running.
pub(crate) fn lone_node(dir: &Path) -> Result<(Initialized, Config), Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let created = init(&InitOptions {
        dir: dir.join("leipzig"),
        node_id: "leipzig".into(),
        name: "Leipzig".into(),
        prefix: "LEJ".into(),
        listen: format!("127.0.0.1:{port}"),
        endpoint: format!("https://127.0.0.1:{port}"),
        web_listen: None,
        hostnames: vec![],
        office_name: "office".into(),
    })?;
    let config = Config::load_with_env(&created.config_path, [])?;
    Ok((created, config))
}

/// A new voucher of `config`'s node, valid from `from` to `until`, with a treatment cap.
pub(crate) fn voucher(config: &Config, from: Day, until: Day, cap_cents: i64) -> SignedVoucher {
    let key = &config.signing_key;
    let body = new_body(
        config.node_id(),
        Serial::random(),
        &key.verifying_key(),
        from,
        until,
        &[],
        Some(cap_cents),
    );
    SignedVoucher::sign(&body, key)
}

/// Seals receipts with `key` as the node does.
pub(crate) fn receipt_signer(key: &SigningKey) -> impl Fn(&Receipt) -> Vec<u8> + use<> {
    let key = key.clone();
    let key_id = KeyId::of(&key.verifying_key()).0;
    move |receipt: &Receipt| {
        let receipt = Receipt {
            key_id: key_id.clone(),
            ..receipt.clone()
        };
        signed::seal(Kind::Receipt, &receipt, &key)
    }
}

/// Ceilings high enough never to refuse a benchmark's claims.
#[allow(dead_code)]
pub(crate) const CEILINGS: schein_node::store::Ceilings = schein_node::store::Ceilings {
    medication_per_voucher_cents: schein_proto::money::MAX_CENTS,
    per_claim_cents: schein_proto::money::MAX_CENTS,
};
