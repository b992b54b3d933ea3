//! Throw-away PKI for the test cluster: a CA and a server certificate for `127.0.0.1` and
//! `localhost`, generated at start (rcgen, ring) and served with rustls.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The generated CA (its PEM goes into the kubeconfig) and the rustls server configuration.
pub struct Pki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Server configuration presenting the server certificate (ALPN `http/1.1` only).
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Errors are strings: this runs once at start and any failure is fatal.
pub fn generate() -> Result<Pki, String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");

    let ca_key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", &e))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "podcap-testcluster-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| err("CA cert", &e))?;

    let server_key = KeyPair::generate().map_err(|e| err("server key", &e))?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| err("server params", &e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_cert = params
        .signed_by(&server_key, &ca)
        .map_err(|e| err("server cert", &e))?;

    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err("TLS cert", &e))?;
    // Only HTTP/1.1: the Go client falls back from h2 cleanly.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem: ca.pem(),
        server_config: Arc::new(config),
    })
}
