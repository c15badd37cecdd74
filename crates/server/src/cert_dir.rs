//! The certificates directory (`[general] certificates`, Prosody's convention): a host's pair is
//! `DOMAIN.crt` + `DOMAIN.key`, or `DOMAIN/fullchain.pem` + `DOMAIN/privkey.pem` as certbot
//! lays out `/etc/letsencrypt/live`; and `xmppd cert import`, which copies each host's pair from
//! such directories into it (Prosody's `prosodyctl cert import`), so a renewal hook needs one
//! command.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use crate::certs::{self, CertError};

/// Directory entries looked at when searching a source for a certificate naming a host: a
/// live directory holds one entry per certificate, so this is far beyond any real one.
const MAX_SCANNED_ENTRIES: usize = 10_000;

/// The pair for `domain` in `dir`, in either layout, when both files exist.
pub fn find_pair(dir: &Path, domain: &str) -> Option<(PathBuf, PathBuf)> {
    let flat = (
        dir.join(format!("{domain}.crt")),
        dir.join(format!("{domain}.key")),
    );
    let certbot = (
        dir.join(domain).join("fullchain.pem"),
        dir.join(domain).join("privkey.pem"),
    );
    [flat, certbot]
        .into_iter()
        .find(|(c, k)| c.is_file() && k.is_file())
}

/// What `cert import` did for one host.
#[derive(Debug)]
pub enum ImportOutcome {
    /// Copied in; the certificate's expiry as a Unix time.
    Imported {
        /// The certificate file it came from.
        from: PathBuf,
        /// The end of its validity.
        not_after: i64,
    },
    /// No source holds a certificate for the host.
    NotFound,
    /// A certificate was found but is not usable; nothing was written for the host.
    Refused {
        /// The certificate file.
        from: PathBuf,
        /// What is wrong with it.
        problems: Vec<String>,
    },
}

/// Copies, for each of `hosts`, the first usable pair found in `sources` into `target` as
/// `DOMAIN.crt` (0644) and `DOMAIN.key` (0640), both given the group of `target`, so a
/// `root:xmppd` directory yields keys the server's user can read and nobody else can. Each
/// file is written beside its final name and renamed, so the server never reads half a key.
pub fn import(
    hosts: &[String],
    sources: &[PathBuf],
    target: &Path,
) -> Result<Vec<(String, ImportOutcome)>, CertError> {
    let mut outcomes = Vec::new();
    for host in hosts {
        let mut outcome = ImportOutcome::NotFound;
        for source in sources {
            let Some((cert, key)) = candidate(source, host) else {
                continue;
            };
            match usable(host, &cert, &key) {
                Ok((chain_pem, key_pem, not_after)) => {
                    install(target, host, &chain_pem, &key_pem)?;
                    outcome = ImportOutcome::Imported {
                        from: cert,
                        not_after,
                    };
                    break;
                }
                Err(problems) => {
                    outcome = ImportOutcome::Refused {
                        from: cert,
                        problems,
                    };
                }
            }
        }
        outcomes.push((host.clone(), outcome));
    }
    Ok(outcomes)
}

/// The pair for `host` in `source`: by name, or else the first certificate directory whose
/// certificate names the host (certbot names a multi-domain certificate's directory after its
/// first domain only).
fn candidate(source: &Path, host: &str) -> Option<(PathBuf, PathBuf)> {
    if let Some(pair) = find_pair(source, host) {
        return Some(pair);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(source)
        .ok()?
        .take(MAX_SCANNED_ENTRIES)
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().find_map(|dir| {
        let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
        let chain = certs::read_chain(&cert).ok()?;
        (key.is_file() && certs::names_host(&chain[0], host)).then_some((cert, key))
    })
}

/// The PEM texts and expiry of a pair that serves `host`: it parses, names the host, is valid
/// now, and the key is the certificate's.
fn usable(host: &str, cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>, i64), Vec<String>> {
    let chain = certs::read_chain(cert).map_err(|e| vec![e.to_string()])?;
    let private_key = certs::read_key(key).map_err(|e| vec![e.to_string()])?;
    let mut problems = certs::certificate_problems(host, &chain[0]);
    if let Err(e) = certs::key_matches(&chain, &private_key) {
        problems.push(format!("{}: {e}", key.display()));
    }
    let not_after = not_after(&chain[0]);
    if !problems.is_empty() {
        return Err(problems);
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| vec![format!("{}: {e}", p.display())]);
    Ok((read(cert)?, read(key)?, not_after.unwrap_or_default()))
}

/// The end of a certificate's validity as a Unix time.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

fn install(target: &Path, host: &str, chain: &[u8], key: &[u8]) -> Result<(), CertError> {
    if !target.is_dir() {
        std::fs::create_dir_all(target).map_err(io_err(target))?;
        set_mode(target, 0o750)?;
    }
    let group = group_of(target);
    for (name, contents, mode) in [
        (format!("{host}.key"), key, 0o640),
        (format!("{host}.crt"), chain, 0o644),
    ] {
        let path = target.join(&name);
        let partial = target.join(format!(".{name}.partial"));
        certs::write_private(&partial, contents)?;
        set_mode(&partial, mode)?;
        if let Some(gid) = group {
            // Only root, or a member of the group, may give a file the directory's group;
            // anyone else keeps their own group, which the mode then confines to them.
            if let Err(e) = std::os::unix::fs::chown(&partial, None, Some(gid)) {
                tracing::debug!(error = %e, file = %partial.display(), "group unchanged");
            }
        }
        std::fs::rename(&partial, &path).map_err(io_err(&path))?;
    }
    Ok(())
}

fn group_of(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir).ok().map(|m| m.gid())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
#[path = "cert_dir_tests.rs"]
mod tests;
