//! Certificates and the identities they carry.
//!
//! Each node is its own certificate authority (no central one): its CA signs the node's TLS
//! certificate and the client certificates of its office staff, providers and funders. A
//! certificate names its holder in one SAN URI, `schein://<node-id>/<role>/<name>`; that URI is
//! the caller identity every RPC is authorised against.

use std::fmt;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// The scheme of identity URIs in certificates.
const URI_SCHEME: &str = "schein://";

/// What a certificate holder may do; named in its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A member node, calling the federation service of another node.
    Node,
    /// Clearing office staff: issue and revoke vouchers of their own node.
    Office,
    /// Doctors' practices, dentists, hospitals, pharmacies: verify vouchers through their node.
    Provider,
    /// State-level funders: read aggregate reports.
    Funder,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Office => "office",
            Role::Provider => "provider",
            Role::Funder => "funder",
        }
    }
}

impl Role {
    /// Who holds this role, in words for messages.
    pub const fn holders(self) -> &'static str {
        match self {
            Role::Node => "member nodes",
            Role::Office => "clearing office staff",
            Role::Provider => "providers",
            Role::Funder => "funders",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "node" => Ok(Role::Node),
            "office" => Ok(Role::Office),
            "provider" => Ok(Role::Provider),
            "funder" => Ok(Role::Funder),
            other => Err(IdentityError::UnknownRole(other.to_owned())),
        }
    }
}

/// Why a certificate or a name does not make a schein identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("the certificate names no schein identity (a SAN URI schein://node/role/name)")]
    NoIdentity,
    #[error("the certificate names more than one schein identity")]
    SeveralIdentities,
    #[error("'{0}' is not a schein identity URI (schein://node/role/name)")]
    BadUri(String),
    #[error("'{0}' is not a role (node, office, provider, funder)")]
    UnknownRole(String),
    #[error(
        "'{0}' is not a valid node id (2 to 32 lower-case letters, digits or '-', starting with a letter)"
    )]
    BadNodeId(String),
    #[error("'{0}' is not a valid name (1 to 64 lower-case letters, digits, '.', '_' or '-')")]
    BadName(String),
    #[error("a node certificate must name the node itself (schein://{0}/node/{0})")]
    NodeNameMismatch(String),
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
}

/// Checks a node id: it appears in URIs, file names and DNS names.
pub fn validate_node_id(id: &str) -> Result<(), IdentityError> {
    let ok = (2..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadNodeId(id.to_owned()))
    }
}

/// Checks the name of a certificate holder (a practice, a staff account): a handle, not a
/// person's data.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName(name.to_owned()))
    }
}

/// Who is calling: the identity named in a verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub node: String,
    pub role: Role,
    pub name: String,
}

impl Identity {
    pub fn new(node: &str, role: Role, name: &str) -> Result<Self, IdentityError> {
        validate_node_id(node)?;
        validate_name(name)?;
        if role == Role::Node && name != node {
            return Err(IdentityError::NodeNameMismatch(node.to_owned()));
        }
        Ok(Self {
            node: node.to_owned(),
            role,
            name: name.to_owned(),
        })
    }

    pub fn uri(&self) -> String {
        format!("{URI_SCHEME}{}/{}/{}", self.node, self.role, self.name)
    }

    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadUri(uri.to_owned());
        let rest = uri.strip_prefix(URI_SCHEME).ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(node), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Self::new(node, role.parse()?, name)
    }

    /// Reads the identity from a DER certificate. Does not check who signed it: that is the
    /// TLS verifier's job ([`crate::tls`]).
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?
            .ok_or(IdentityError::NoIdentity)?;
        let mut uris = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(URI_SCHEME) => {
                    Some(*uri)
                }
                _ => None,
            });
        let uri = uris.next().ok_or(IdentityError::NoIdentity)?;
        if uris.next().is_some() {
            return Err(IdentityError::SeveralIdentities);
        }
        Self::parse_uri(uri)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}' of {}", self.role, self.name, self.node)
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey").finish_non_exhaustive()
    }
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew between machines) for `days` days.
    pub fn days_from_now(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

/// A node's certificate authority, able to sign certificates.
pub struct NodeCa {
    node: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl fmt::Debug for NodeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCa")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeCa {
    /// Makes a new CA for `node`, valid for 20 years.
    pub fn generate(node: &str) -> Result<(Self, CertifiedKey), IdentityError> {
        validate_node_id(node)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("schein CA {node}"));
        dn.push(DnType::OrganizationName, "schein");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let validity = Validity::days_from_now(20 * 366);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        let pem = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let ca = Self::load(node, &pem.cert_pem, &pem.key_pem)?;
        Ok((ca, pem))
    }

    /// Loads a CA from its certificate and key (PEM).
    pub fn load(node: &str, cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            node: node.to_owned(),
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The node's own TLS certificate: server for its clients and peers, client towards peers.
    /// Its DNS names are the node id (what peers and clients check) and `extra_hostnames`.
    pub fn issue_node_cert(
        &self,
        extra_hostnames: &[String],
        validity: Validity,
    ) -> Result<CertifiedKey, IdentityError> {
        let identity = Identity::new(&self.node, Role::Node, &self.node)?;
        let mut names = vec![self.node.clone()];
        names.extend(extra_hostnames.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, &identity, validity)
    }

    /// A client certificate for office staff, a provider or a funder of this node.
    pub fn issue_client_cert(
        &self,
        role: Role,
        name: &str,
        validity: Validity,
    ) -> Result<CertifiedKey, IdentityError> {
        let identity = Identity::new(&self.node, role, name)?;
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, &identity, validity)
    }

    /// A renewed client certificate for `role` and `name` of this node, for the public key
    /// `spki_der` its holder made: the holder's private key never leaves the holder. PEM.
    pub fn renew_client_cert(
        &self,
        role: Role,
        name: &str,
        validity: Validity,
        spki_der: &[u8],
    ) -> Result<String, IdentityError> {
        let identity = Identity::new(&self.node, role, name)?;
        let key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| IdentityError::Unreadable(format!("the new public key: {e}")))?;
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let params = with_validity(named(params, &identity)?, validity);
        Ok(params.signed_by(&key, &self.issuer)?.pem())
    }

    /// Signs a certificate for any identity URI, even one this node would refuse. Exists so that
    /// tests can present malformed or impersonating certificates over real TLS.
    pub fn issue_raw(&self, uri: &str, validity: Validity) -> Result<CertifiedKey, IdentityError> {
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params
            .subject_alt_names
            .push(SanType::URI(uri.to_owned().try_into()?));
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, uri);
        self.finish(params, validity)
    }

    fn sign(
        &self,
        params: CertificateParams,
        identity: &Identity,
        validity: Validity,
    ) -> Result<CertifiedKey, IdentityError> {
        self.finish(named(params, identity)?, validity)
    }

    fn finish(
        &self,
        params: CertificateParams,
        validity: Validity,
    ) -> Result<CertifiedKey, IdentityError> {
        let params = with_validity(params, validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The CA certificates a client of this node trusts its server certificate by (PEM): the CA
/// in use, a new one waiting in `keys/next/` (a CA rotation), and previous ones still taken.
/// Outside a rotation: the CA in use alone.
pub fn node_ca_bundle(
    ca_cert_pem: &str,
    roster: &crate::roster::Roster,
    node_id: &str,
    key_dir: &std::path::Path,
) -> String {
    let mut pems = vec![ca_cert_pem.trim().to_owned()];
    if let Ok(next) = std::fs::read_to_string(key_dir.join("next/ca.pem")) {
        pems.push(next.trim().to_owned());
    }
    if let Some(me) = roster.member(node_id) {
        let today = schein_proto::Day::today();
        pems.push(me.entry.ca_cert.trim().to_owned());
        pems.extend(
            me.entry
                .previous_cas
                .iter()
                .filter(|p| schein_proto::Day::parse(&p.valid_until).is_ok_and(|d| today <= d))
                .map(|p| p.ca_cert.trim().to_owned()),
        );
    }
    let mut seen = Vec::new();
    pems.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    pems.join("\n") + "\n"
}

/// The DNS names a PEM certificate names (none if it cannot be read).
pub fn dns_names_of_pem(pem: &str) -> Vec<String> {
    use rustls::pki_types::pem::PemObject;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Vec::new();
    };
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// SHA-256 of a certificate's DER encoding: what revocation lists name.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

/// `params` naming `identity`: its URI as the one SAN and the common name.
fn named(
    mut params: CertificateParams,
    identity: &Identity,
) -> Result<CertificateParams, IdentityError> {
    params
        .subject_alt_names
        .push(SanType::URI(identity.uri().try_into()?));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.uri());
    dn.push(DnType::OrganizationName, "schein");
    params.distinguished_name = dn;
    Ok(params)
}

/// `params` valid for `validity`, for signatures only, naming the CA's key.
fn with_validity(mut params: CertificateParams, validity: Validity) -> CertificateParams {
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

/// A new key for a client identity (ECDSA P-256, as `enroll` makes): its private key (PEM) and
/// its public key as a SubjectPublicKeyInfo (DER), for [`NodeCa::renew_client_cert`].
pub fn new_client_key() -> Result<(String, Vec<u8>), IdentityError> {
    let key = KeyPair::generate()?;
    Ok((
        key.serialize_pem(),
        rcgen::PublicKeyData::subject_public_key_info(&key),
    ))
}

/// The last moment a certificate is valid, Unix seconds (`None` if it cannot be read).
pub fn not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// [`fingerprint`] of the first certificate in `pem`.
pub fn fingerprint_of_pem(pem: &str) -> Option<[u8; 32]> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| fingerprint(&der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uri_round_trips() {
        let id = Identity::new("leipzig", Role::Provider, "praxis-sued").unwrap();
        assert_eq!(id.uri(), "schein://leipzig/provider/praxis-sued");
        assert_eq!(Identity::parse_uri(&id.uri()).unwrap(), id);
    }

    #[test]
    fn refuses_bad_identities() {
        for uri in [
            "schein://leipzig/janitor/x",
            "schein://Leipzig/office/x",
            "schein://leipzig/office/",
            "schein://leipzig/office/a/b",
            "https://leipzig/office/a",
            "schein://leipzig/node/dresden",
        ] {
            assert!(Identity::parse_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn certificates_carry_their_identity() {
        let (ca, _) = NodeCa::generate("dresden").unwrap();
        let cert = ca
            .issue_client_cert(Role::Office, "team-1", Validity::days_from_now(30))
            .unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert.cert_pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .unwrap();
        let identity = Identity::from_certificate(&der).unwrap();
        assert_eq!(
            identity,
            Identity::new("dresden", Role::Office, "team-1").unwrap()
        );

        let node = ca
            .issue_node_cert(&[], Validity::days_from_now(30))
            .unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(node.cert_pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .unwrap();
        assert_eq!(Identity::from_certificate(&der).unwrap().role, Role::Node);
    }
}
