//! `schein identity renew`: a new key and certificate for the identity in use, before the old
//! one expires, without a visit to the operator; and the warning every command gives when the
//! certificate expires soon.

use std::path::Path;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use schein_proto::Day;
use schein_proto::v1::RenewRequest;
use schein_proto::v1::identities_client::IdentitiesClient;

use crate::Outcome;
use crate::client::Client;
use crate::output::{Output, outln};

/// Days before expiry from which every command warns.
const WARN_DAYS: i64 = 14;

#[derive(Subcommand, Debug)]
pub(crate) enum IdentityCommand {
    /// Get a new key and certificate for this identity before it expires (your node signs it;
    /// the old certificate is revoked). The identity file is replaced.
    Renew {
        /// Days the new certificate is valid (default and most: 90).
        #[arg(long)]
        days: Option<u32>,
    },
}

/// Warns on standard error if `client`'s certificate expires within [`WARN_DAYS`].
pub(crate) fn warn_if_expiring(client: &Client) {
    let Some(not_after) = client.identity.not_after() else {
        return;
    };
    let left = (not_after - schein_node::node::unix_now()) / 86_400;
    if left < WARN_DAYS {
        eprintln!(
            "warning: your certificate expires on {} (in {left} days): renew it with `schein identity renew`",
            Day::of_unix_seconds(not_after)
        );
    }
}

pub(crate) async fn execute(
    client: &Client,
    path: &Path,
    command: IdentityCommand,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let IdentityCommand::Renew { days } = command;
    let (key_pem, public_key) =
        schein_node::pki::new_client_key().map_err(|e| anyhow!("cannot make a new key: {e}"))?;
    let answer = IdentitiesClient::new(client.channel())
        .renew(RenewRequest {
            public_key,
            days: days.unwrap_or(0),
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner();
    let node_ca = if answer.node_ca_pem.trim().is_empty() {
        client.identity.node_ca.clone()
    } else {
        answer.node_ca_pem
    };
    let renewed = schein_node::client::IdentityFile {
        certificate: answer.certificate_pem,
        private_key: key_pem,
        node_ca,
        ..client.identity.clone()
    };
    renewed
        .replace(path)
        .with_context(|| format!("the new certificate could not be written to {}; the old one is revoked: ask your node's operator for a new identity", path.display()))?;
    let until = answer
        .valid_until
        .map(|d| Day::from(d).to_string())
        .unwrap_or_default();
    if out.json {
        outln!(
            "{}",
            serde_json::json!({"renewed": true, "valid_until": until, "identity_file": path.display().to_string()})
        );
    } else {
        outln!(
            "Renewed: {} now holds a new key and a certificate valid until {until}; the old certificate is revoked.",
            path.display()
        );
    }
    Ok(Outcome::Done)
}
