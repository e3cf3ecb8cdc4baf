//! A client identity as a password-protected PKCS#12 (.p12) file, so that people sign into the
//! web console with the identity they already have: Windows, macOS and Firefox import it with a
//! double click and the password.
//!
//! The file holds the client certificate, its private key and the node's CA certificate. It is
//! encrypted the way `openssl pkcs12 -export -legacy -certpbe PBE-SHA1-3DES` writes it:
//! pbeWithSHAAnd3-KeyTripleDES-CBC for both the key bag and the certificate bag, and an
//! HMAC-SHA1 MAC. That is the one form every importer we care about opens:
//! - macOS Keychain (Security.framework) refuses PBES2/AES and SHA-256 MACs with a misleading
//!   "wrong password"; Apple's developer forum (thread 697030) and the `-legacy` workarounds of
//!   many projects say so;
//! - Windows before 10 1709 (and Server 2016) knows only the legacy schemes; Windows 10/11 and
//!   Firefox (NSS) read both;
//! - OpenSSL 3, and so Node.js 20 and Playwright's `clientCertificates`, refuse RC2-40 (the
//!   usual legacy choice for certificate bags) unless its legacy provider is loaded, while
//!   3DES is in its default provider. So no RC2 anywhere.
//!
//! 3DES with a PKCS#12 KDF is weak against a weak password; the strength here is the password:
//! [`Password::generate`] draws 16 characters (about 79 bits) from the operating system's RNG.

use std::fmt;
use std::path::Path;

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rand::Rng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::client::IdentityFile;

/// Iterations of the PKCS#12 KDF for encryption and MAC: what OpenSSL writes by default.
const ITERATIONS: u32 = 2048;

/// Characters of generated passwords: digits and lower-case letters without 0/o, 1/l/i, which
/// people misread when they type a password from a screen or a sheet of paper.
const PASSWORD_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// Why an identity could not be written as a .p12 file.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    #[error("the password is empty: macOS refuses such files, and they protect nothing")]
    EmptyPassword,
    #[error("the identity's {what} cannot be read: {message}")]
    Unreadable { what: &'static str, message: String },
    #[error("the identity's private key does not belong to its certificate")]
    KeyMismatch,
    #[error("cannot build the PKCS#12 file: {0}")]
    Encoding(String),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// The name the importers show for the identity: `schein <node> <role> <name>`.
pub fn friendly_name(identity: &IdentityFile) -> String {
    format!(
        "schein {} {} {}",
        identity.node, identity.role, identity.name
    )
}

/// Builds the .p12 file of `identity`, encrypted with `password` (see the module doc for the
/// algorithms). Refuses an empty password and a key that does not match the certificate.
pub fn export(identity: &IdentityFile, password: &str) -> Result<Vec<u8>, P12Error> {
    if password.is_empty() {
        return Err(P12Error::EmptyPassword);
    }
    let client_der = certificate_der(&identity.certificate, "certificate")?;
    let ca_der = certificate_der(&identity.node_ca, "node CA certificate")?;
    let key_der =
        PrivatePkcs8KeyDer::from_pem_slice(identity.private_key.as_bytes()).map_err(|e| {
            P12Error::Unreadable {
                what: "private key (PKCS#8 PEM)",
                message: e.to_string(),
            }
        })?;
    check_key_matches(&client_der, &identity.private_key)?;

    let encoding = |e: p12_keystore::error::Error| P12Error::Encoding(e.to_string());
    let client = Certificate::from_der(&client_der).map_err(encoding)?;
    let ca = Certificate::from_der(&ca_der).map_err(encoding)?;
    let key = PrivateKey::from_der(key_der.secret_pkcs8_der()).map_err(encoding)?;
    // The local key id ties the key to its certificate in the file; any octets do, and a digest
    // of the certificate is what importers are used to.
    let local_key_id = Sha256::digest(&client_der).to_vec();
    let chain = PrivateKeyChain::new(local_key_id, key, [client, ca]);
    let mut store = KeyStore::new();
    store.add_entry(
        &friendly_name(identity),
        KeyStoreEntry::PrivateKeyChain(chain),
    );
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha1)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(encoding)
}

/// Writes the .p12 file of `identity` to `path`, readable by its owner only; never overwrites.
pub fn write_new(identity: &IdentityFile, password: &str, path: &Path) -> Result<(), P12Error> {
    let bytes = export(identity, password)?;
    crate::files::write_new(path, &bytes, true).map_err(|e| P12Error::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn certificate_der(pem: &str, what: &'static str) -> Result<Vec<u8>, P12Error> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| P12Error::Unreadable {
            what,
            message: e.to_string(),
        })
}

/// An identity file is edited by hand at times; a .p12 whose key does not fit its certificate
/// imports without complaint and fails only at the first sign-in, far from the cause.
fn check_key_matches(cert_der: &[u8], key_pem: &str) -> Result<(), P12Error> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| P12Error::Unreadable {
            what: "certificate",
            message: e.to_string(),
        })?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| P12Error::Unreadable {
        what: "private key",
        message: e.to_string(),
    })?;
    if cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw() {
        Ok(())
    } else {
        Err(P12Error::KeyMismatch)
    }
}

/// A password for a .p12 file: shown to its holder once, stored nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Four groups of four characters from an alphabet without look-alikes, drawn from the
    /// operating system's RNG, e.g. `k7pm-3xwa-9dqe-hn4t`. The hyphens are part of it.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut text = String::with_capacity(19);
        for group in 0..4 {
            if group > 0 {
                text.push('-');
            }
            for _ in 0..4 {
                let index = rng.gen_range(0..PASSWORD_ALPHABET.len());
                text.push(char::from(PASSWORD_ALPHABET[index]));
            }
        }
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{NodeCa, Role, Validity};
    use p12_keystore::Pkcs12Archive;

    fn identity() -> IdentityFile {
        let (ca, ca_pem) = NodeCa::generate("leipzig").unwrap();
        let cert = ca
            .issue_client_cert(Role::Provider, "praxis-nord", Validity::days_from_now(30))
            .unwrap();
        IdentityFile {
            node: "leipzig".into(),
            node_name: "Leipzig".into(),
            endpoint: "https://127.0.0.1:7443".into(),
            role: Role::Provider,
            name: "praxis-nord".into(),
            certificate: cert.cert_pem,
            private_key: cert.key_pem,
            node_ca: ca_pem.cert_pem,
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn holds_the_key_its_certificate_and_the_node_ca() {
        let identity = identity();
        let file = export(&identity, "k7pm-3xwa-9dqe-hn4t").unwrap();
        let archive = Pkcs12Archive::from_pkcs12(&file, "k7pm-3xwa-9dqe-hn4t").unwrap();
        assert_eq!(archive.keys.len(), 1);
        let key = &archive.keys[0];
        assert_eq!(
            key.friendly_name.as_deref(),
            Some("schein leipzig provider praxis-nord")
        );
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(identity.private_key.as_bytes()).unwrap();
        assert_eq!(key.key.as_der(), pkcs8.secret_pkcs8_der());
        let certs: Vec<&[u8]> = archive.certs.iter().map(|bag| bag.cert.as_der()).collect();
        assert_eq!(certs, [der(&identity.certificate), der(&identity.node_ca)]);
        let client = &archive.certs[0];
        assert_eq!(
            client.local_key_id.as_deref(),
            key.local_key_id.as_ref().map(|id| id.as_ref())
        );
    }

    #[test]
    fn a_wrong_password_opens_nothing() {
        let file = export(&identity(), "k7pm-3xwa-9dqe-hn4t").unwrap();
        assert!(Pkcs12Archive::from_pkcs12(&file, "k7pm-3xwa-9dqe-hn4u").is_err());
        assert!(Pkcs12Archive::from_pkcs12(&file, "").is_err());
    }

    #[test]
    fn refuses_an_empty_password_and_a_foreign_key() {
        let mut identity = identity();
        assert!(matches!(
            export(&identity, ""),
            Err(P12Error::EmptyPassword)
        ));
        identity.private_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert!(matches!(
            export(&identity, "secret"),
            Err(P12Error::KeyMismatch)
        ));
        identity.certificate = "not a certificate".into();
        assert!(matches!(
            export(&identity, "secret"),
            Err(P12Error::Unreadable { .. })
        ));
    }

    #[test]
    fn generated_passwords_are_four_groups_of_unambiguous_characters() {
        let first = Password::generate();
        let groups: Vec<&str> = first.as_str().split('-').collect();
        assert_eq!(groups.len(), 4);
        for group in groups {
            assert_eq!(group.len(), 4);
            assert!(group.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
        }
        assert_ne!(first, Password::generate());
        assert!(!format!("{first:?}").contains(first.as_str()));
    }
}
