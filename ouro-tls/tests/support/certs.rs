//! Certificates the tests make: a CA, leaves for `localhost` (good,
//! expired, a CA used as leaf) and one for another name.

use ouro_tls::{CertificateDer, PrivateKeyDer};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate chain and its key, as DER and as PEM.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).expect("a PKCS#8 key")
    }
}

/// Everything one test needs: the CA the clients trust, and the leaves.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub ca_pem: String,
    /// A CA the clients do not trust, with its own `localhost` leaf.
    pub unknown_ca_leaf: Leaf,
    pub localhost: Leaf,
    pub expired: Leaf,
    pub ca_as_leaf: Leaf,
    pub other_name: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let (root_params, root_key) = ca_params("ouro test CA");
        let ca = root_params.self_signed(&root_key).expect("the CA");
        let issuer = Issuer::new(root_params, root_key);
        let (stranger_params, stranger_key) = ca_params("a CA nobody trusts");
        let stranger = Issuer::new(stranger_params, stranger_key);

        let mut expired = leaf_params("localhost");
        expired.not_before = date_time_ymd(2000, 1, 1);
        expired.not_after = date_time_ymd(2001, 1, 1);
        let (mut ca_as_leaf, _) = ca_params("a CA posing as localhost");
        ca_as_leaf.subject_alt_names = leaf_params("localhost").subject_alt_names;

        Pki {
            ca_pem: ca.pem(),
            ca: ca.der().clone(),
            unknown_ca_leaf: sign(leaf_params("localhost"), &stranger),
            localhost: sign(leaf_params("localhost"), &issuer),
            expired: sign(expired, &issuer),
            ca_as_leaf: sign(ca_as_leaf, &issuer),
            other_name: sign(leaf_params("elsewhere.test"), &issuer),
        }
    }
}

fn ca_params(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("a key"))
}

fn leaf_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn sign(params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Leaf {
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    Leaf {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
