//! A schein clearing-office node: storage, services, federation client and mutual TLS.
//!
//! The binary (`schein-node`) is a thin shell over this library; the demo in the CLI and the
//! integration tests start nodes through the same [`server::run`] and [`local`] code.

pub mod client;
pub mod config;
pub mod domain;
pub mod enrolled;
pub mod fees;
pub mod files;
pub mod init;
pub mod local;
pub mod node;
pub mod p12;
pub mod peers;
pub mod pki;
pub mod quorum;
pub mod revocation;
pub mod roster;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
pub mod web;
pub mod wire;

/// An error and its sources on one line, for messages to people.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
