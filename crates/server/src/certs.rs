//! Certificates: loading the configured PEM files, generating a self-signed pair when none is
//! configured, and checking that a certificate fits its host.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::warn;
use xmppd_c2s::HostCertificate;

use crate::config::HostConfig;

/// A certificate problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM block of the expected kind.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a certificate for {host}: {message}")]
    Generate {
        /// The host.
        host: String,
        /// rcgen's reason.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a PEM certificate chain (end-entity first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    if chain.is_empty() {
        return Err(CertError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block found; expected a PEM certificate chain".into(),
        });
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(io_err(path))?
        .ok_or_else(|| CertError::Pem {
            path: path.to_owned(),
            message: "no PRIVATE KEY block found; expected a PEM private key".into(),
        })
}

/// Where the generated pair of a host lives.
pub fn generated_paths(data_dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("certs");
    (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    )
}

/// Where a host's certificate comes from, in the order they are looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `cert` and `key` of its `[[host]]`.
    Configured,
    /// The certificates directory (`[general] certificates`).
    Directory,
    /// A self-signed pair in the data dir.
    Generated,
}

/// A host's certificate and key files, and where they were found.
#[derive(Clone, Debug)]
pub struct HostFiles {
    /// The PEM chain.
    pub cert: PathBuf,
    /// The PEM key.
    pub key: PathBuf,
    /// Which setting led to them.
    pub source: CertSource,
}

/// The files a host's certificate is read from: its own `cert`/`key`, else a pair named after
/// it in the certificates directory, else the generated pair's place in the data dir.
pub fn host_files(host: &HostConfig, certificates: Option<&Path>, data_dir: &Path) -> HostFiles {
    if let Some((cert, key)) = &host.tls {
        return HostFiles {
            cert: cert.clone(),
            key: key.clone(),
            source: CertSource::Configured,
        };
    }
    if let Some((cert, key)) =
        certificates.and_then(|dir| crate::cert_dir::find_pair(dir, &host.name))
    {
        return HostFiles {
            cert,
            key,
            source: CertSource::Directory,
        };
    }
    let (cert, key) = generated_paths(data_dir, &host.name);
    HostFiles {
        cert,
        key,
        source: CertSource::Generated,
    }
}

/// The certificate of a host (see [`host_files`]); a self-signed pair is generated on first
/// use and logged, since clients will not trust it.
pub fn host_certificate(
    host: &HostConfig,
    certificates: Option<&Path>,
    data_dir: &Path,
) -> Result<HostCertificate, CertError> {
    let files = host_files(host, certificates, data_dir);
    if files.source == CertSource::Generated && (!files.cert.exists() || !files.key.exists()) {
        generate_self_signed(&host.name, &files.cert, &files.key)?;
        warn!(
            host = %host.name,
            cert = %files.cert.display(),
            "generated a self-signed certificate; clients will not trust it \
             until you configure cert and key for this host or put its pair in the \
             certificates directory"
        );
    }
    Ok(HostCertificate {
        host: host.name.clone(),
        chain: read_chain(&files.cert)?,
        key: read_key(&files.key)?,
    })
}

/// Whether `key` is the private key of the chain's end-entity certificate.
pub fn key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain.to_vec(), signing)
        .keys_match()
        .map_err(|e| format!("the key does not belong to the certificate ({e})"))
}

fn generate_self_signed(host: &str, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()]).map_err(|e| {
        CertError::Generate {
            host: host.to_owned(),
            message: e.to_string(),
        }
    })?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, generated.cert.pem()).map_err(io_err(cert_path))?;
    Ok(())
}

/// Writes a file readable only by its owner (private keys, secrets).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// What is wrong with a certificate for `host` (empty when it is fine): unparsable, expired or
/// not yet valid, or not naming the host.
pub fn certificate_problems(host: &str, cert: &CertificateDer<'_>) -> Vec<String> {
    let parsed = match x509_parser::parse_x509_certificate(cert) {
        Ok((_, c)) => c,
        Err(e) => return vec![format!("the certificate cannot be parsed: {e}")],
    };
    let mut problems = Vec::new();
    if !parsed.validity().is_valid() {
        problems.push(format!(
            "not valid now (valid from {} to {})",
            parsed.validity().not_before,
            parsed.validity().not_after
        ));
    }
    let names = dns_names(&parsed);
    if !names_match(&names, host) {
        problems.push(format!(
            "does not name {host} (it names: {})",
            names.join(", ")
        ));
    }
    problems
}

/// Whether the certificate's DNS names (subjectAltName) include `host`, directly or by a
/// wildcard one label deep.
pub fn names_host(cert: &CertificateDer<'_>, host: &str) -> bool {
    x509_parser::parse_x509_certificate(cert)
        .is_ok_and(|(_, parsed)| names_match(&dns_names(&parsed), host))
}

fn dns_names(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    names
}

fn names_match(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n == host
            || n.strip_prefix("*.")
                .is_some_and(|suffix| host.split_once('.').is_some_and(|(_, rest)| rest == suffix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_reused_and_fits_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostConfig {
            name: "example.test".into(),
            tls: None,
            modules: None,
        };
        let first = host_certificate(&host, None, dir.path()).unwrap();
        let second = host_certificate(&host, None, dir.path()).unwrap();
        assert_eq!(first.chain, second.chain);
        assert!(certificate_problems("example.test", &first.chain[0]).is_empty());
        let problems = certificate_problems("other.test", &first.chain[0]);
        assert!(
            problems[0].contains("does not name other.test"),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert!(
            read_chain(&missing)
                .unwrap_err()
                .to_string()
                .contains("nope.pem")
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        let e = read_key(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("PRIVATE KEY"), "{e}");
    }
}
