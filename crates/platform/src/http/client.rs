//! The HTTP client of every command that takes `--url`: plain HTTP, or HTTPS through
//! rustls. It trusts the system's CA certificates and, when `SSL_CERT_FILE` names a PEM
//! file, the certificates in it as well (a private CA for one lab does not stop the
//! public ones from being trusted).

use std::sync::{Arc, OnceLock};

/// A reqwest client builder that speaks HTTPS with [`tls_config`]. Every reqwest client
/// of breakroom is built from it: reqwest's TLS is compiled without a crypto provider
/// of its own, so a client built otherwise would panic.
pub fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls_config())
}

/// [`client`], blocking (the OTLP exporter's thread).
pub fn blocking_client() -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder().tls_backend_preconfigured(tls_config())
}

/// The TLS configuration of [`client`], also used by the driver's connections.
pub fn tls_config() -> rustls::ClientConfig {
    trust().config.clone()
}

struct Trust {
    config: rustls::ClientConfig,
    /// Why `SSL_CERT_FILE` (or the system's store) gave no certificate, if it did not.
    problems: Vec<String>,
}

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let (roots, problems) = trusted_roots();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            // No roots at all (no ca-certificates, no SSL_CERT_FILE): HTTP still works and
            // every HTTPS handshake fails as "unknown issuer", explained by `tls_failure`.
            .with_root_certificates(roots)
            .with_no_client_auth();
        Trust { config, problems }
    })
}

/// Where distributions keep their CA bundle, for when `SSL_CERT_FILE` hides it.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // macOS, BSDs
];

fn trusted_roots() -> (rustls::RootCertStore, Vec<String>) {
    let mut roots = rustls::RootCertStore::empty();
    // The system's store, or (as for OpenSSL and curl) SSL_CERT_FILE / SSL_CERT_DIR
    // instead of it ...
    let native = rustls_native_certs::load_native_certs();
    let mut problems: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    let file = std::env::var_os("SSL_CERT_FILE");
    if let Some(file) = &file
        && added == 0
        && problems.is_empty()
    {
        problems.push(format!("SSL_CERT_FILE={} holds no PEM certificate", file.to_string_lossy()));
    }
    if file.is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        // ... so the system's bundle is added back: SSL_CERT_FILE adds a CA, it does not
        // take the public ones away.
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        match SYSTEM_BUNDLES.iter().find(|b| std::path::Path::new(b).exists()) {
            Some(bundle) => match CertificateDer::pem_file_iter(bundle) {
                Ok(certs) => drop(roots.add_parsable_certificates(certs.flatten())),
                Err(error) => problems.push(format!("the system's CA bundle {bundle} could not be read: {error}")),
            },
            None => problems.push("no system CA bundle found: only SSL_CERT_FILE's certificates are trusted".into()),
        }
    }
    (roots, problems)
}

/// Why a request failed, when TLS is the reason: a sentence with the cause and the fix.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        // An io::Error hides what it wraps from `source()` (and may wrap another io::Error).
        let mut inner = error;
        while let Some(wrapped) = inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        next = error.source();
    }
    None
}

fn explain(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    let mut text = match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "its TLS certificate is signed by a certificate authority this machine does not trust ({error}).\n\
             If the lab uses a private CA, name the CA's certificate (PEM) in SSL_CERT_FILE, e.g. \
             `SSL_CERT_FILE=ca.pem breakroom …`; on a machine without CA certificates, install them \
             (`apt-get install ca-certificates`)"
        ),
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            format!(
                "its TLS certificate is not issued for this host name ({error}); use the host name the certificate names in --url"
            )
        }
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            format!("its TLS certificate has expired ({error}); renew it on the lab's side")
        }
        other => format!("the TLS handshake failed ({other})"),
    };
    for problem in &trust().problems {
        text.push_str(&format!("\nNote: {problem}"));
    }
    text
}
