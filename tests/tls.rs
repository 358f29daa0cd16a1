//! Every command that takes `--url` speaks HTTPS: here a lab sits behind a TLS proxy
//! whose certificate is signed by a CA the test makes, as a chart's TLS ingress with a
//! private issuer would be.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{ADMIN_TOKEN, Backend, breakroom_with_env, spawn_app};

/// A CA and a certificate for 127.0.0.1 signed by it, made by the openssl command line.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=breakroom test CA",
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n").unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// Terminates TLS on a free port and forwards each connection to `upstream`; returns
/// the proxy's `https://` URL.
async fn tls_proxy(dir: &Path, upstream: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let upstream = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_commands_and_the_driver_reach_a_lab_behind_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let fixed = spawn_app(Backend::Embedded, |c| c.platform.fixed = vec!["vote:referral".into()]).await;
    let url = tls_proxy(dir.path(), &fixed.url).await;
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();

    // The private CA is not trusted: a clear refusal that names the fix.
    let (code, out) = breakroom_with_env(&["check", "vote", "--url", &url, "--interval-ms", "0"], &[]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("certificate authority this machine does not trust"), "{out}");
    assert!(out.contains("SSL_CERT_FILE"), "names the fix: {out}");

    // Named by SSL_CERT_FILE, it is.
    let trusted = [("SSL_CERT_FILE", ca)];
    let (code, out) = breakroom_with_env(&["check", "vote", "--url", &url, "--interval-ms", "0"], &trusted).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: all 15 referral votes were accepted."), "{out}");
    let (code, out) = breakroom_with_env(&["reset", "vote", "--url", &url, "--token", ADMIN_TOKEN], &trusted).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Ready for the next talk. votes: 0"), "{out}");

    let (code, out) =
        breakroom_with_env(&["drive", "url", "--url", &format!("{url}/health"), "--rate", "5"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not trust") && out.contains("SSL_CERT_FILE"), "the driver says why too: {out}");

    // The driver too, open and closed model.
    let health = format!("{url}/health");
    for model in
        [&["--rate", "20", "--duration", "1s"][..], &["--rate", "max", "--connections", "2", "--duration", "1s"]]
    {
        let mut args = vec!["drive", "url", "--url", &health];
        args.extend_from_slice(model);
        args.extend_from_slice(&["--threshold", "errors<1%"]);
        let (code, out) = breakroom_with_env(&args, &trusted).await;
        assert_eq!(code, 0, "drive {model:?} over TLS: {out}");
    }
}
