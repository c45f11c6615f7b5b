//! Signing keys: Ed25519 (EdDSA) for access tokens and for id_tokens where a client asks, RSA
//! (RS256) for id_tokens by default, since OpenID Connect requires it and many clients accept
//! nothing else. Generated on first start, kept in the store (so every instance signs with the
//! same keys), rotated together by `latchkey keys rotate`. A retired key stays in the JWKS until
//! the last token it signed has expired.

use crate::domain::{sealed, secret};
use crate::store::{DynStore, SigningKeyRow};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub sid: String,
    pub did: String,
    pub client_id: String,
    pub amr: Vec<String>,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// The algorithms the server signs with: one active key of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::EdDSA, SigningAlg::RS256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

/// PKCS#8 v1 header for a raw Ed25519 seed: jsonwebtoken takes exactly this 48-byte form.
const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// How long the key cache may be stale; retired keys stay published this much longer.
const CACHE_TTL: Duration = Duration::from_secs(30);
const PUBLISH_MARGIN_SECS: i64 = 60;
/// A new key is published this long before it signs anything, so verifiers that cache the
/// JWKS (we let them, for 60 s) know it before they meet a token signed with it.
pub const PUBLISH_LEAD_SECS: i64 = 90;

struct Loaded {
    at: Instant,
    active: HashMap<SigningAlg, (String, Signer)>,
    verify: HashMap<String, (SigningAlg, DecodingKey)>,
    jwks: JwkSet,
}

pub struct KeyRing {
    store: DynStore,
    access_ttl: i64,
    loaded: RwLock<Option<Loaded>>,
    /// The operator's master key: private keys are stored sealed under it.
    master: Option<[u8; 32]>,
}

/// What a signing key's seed is sealed to (its own id: a sealed seed moved to another row does not open).
fn seed_context(kid: &str) -> Vec<u8> {
    [b"signing_key:".as_slice(), kid.as_bytes()].concat()
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no active signing key")]
    NoActiveKey,
    #[error("bad key material for {0}")]
    BadKey(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("signing key {0}: {1}")]
    Sealed(String, crate::domain::sealed::AtRestError),
}

pub fn new_key_row(alg: SigningAlg, now: i64) -> Result<SigningKeyRow, KeyError> {
    let seed = match alg {
        SigningAlg::EdDSA => secret::random_bytes::<32>().to_vec(),
        SigningAlg::RS256 => {
            use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::BadKey("a new RSA key".into()))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::BadKey("a new RSA key".into()))?;
            der.as_ref().to_vec()
        }
    };
    Ok(SigningKeyRow {
        kid: secret::b64url(&secret::random_bytes::<12>()),
        seed,
        created_at: now,
        retired_at: None,
        alg: alg.as_str().into(),
    })
}

/// A loaded private key. RSA keys are parsed once, here: jsonwebtoken parses (and checks) the
/// DER on every signature, which made RS256 id_tokens cost ~1.4 ms of CPU each.
enum Signer {
    Jwt(EncodingKey),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

impl Signer {
    fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, KeyError> {
        match self {
            Signer::Jwt(key) => Ok(jsonwebtoken::encode(header, claims, key)?),
            Signer::Rsa(pair) => {
                let mut jwt = secret::b64url(&serde_json::to_vec(header).map_err(|_| KeyError::BadKey("header".into()))?);
                jwt.push('.');
                jwt.push_str(&secret::b64url(&serde_json::to_vec(claims).map_err(|_| KeyError::BadKey("claims".into()))?));
                let mut sig = vec![0u8; pair.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, jwt.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::BadKey("RSA signing failed".into()))?;
                jwt.push('.');
                jwt.push_str(&secret::b64url(&sig));
                Ok(jwt)
            }
        }
    }
}

fn signer(alg: SigningAlg, row: &SigningKeyRow, enc: EncodingKey) -> Result<Signer, KeyError> {
    match alg {
        SigningAlg::EdDSA => Ok(Signer::Jwt(enc)),
        SigningAlg::RS256 => aws_lc_rs::rsa::KeyPair::from_pkcs8(&row.seed).map(Signer::Rsa).map_err(|_| KeyError::BadKey(row.kid.clone())),
    }
}

fn key_pair(row: &SigningKeyRow) -> Result<(SigningAlg, EncodingKey, Jwk), KeyError> {
    let bad = || KeyError::BadKey(row.kid.clone());
    let alg = SigningAlg::parse(&row.alg).ok_or_else(bad)?;
    let enc = match alg {
        SigningAlg::EdDSA => {
            if row.seed.len() != 32 {
                return Err(bad());
            }
            let mut der = PKCS8_ED25519_PREFIX.to_vec();
            der.extend_from_slice(&row.seed);
            EncodingKey::from_ed_der(&der)
        }
        // jsonwebtoken takes PKCS#1 as DER, PKCS#8 only as PEM.
        SigningAlg::RS256 => EncodingKey::from_rsa_pem(pkcs8_pem(&row.seed).as_bytes()).map_err(|_| bad())?,
    };
    let mut jwk = Jwk::from_encoding_key(&enc, alg.jwt())?;
    jwk.common.key_id = Some(row.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
        SigningAlg::RS256 => KeyAlgorithm::RS256,
    });
    Ok((alg, enc, jwk))
}

fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

impl KeyRing {
    pub fn new(store: DynStore, access_ttl: i64, master: Option<[u8; 32]>) -> Self {
        Self { store, access_ttl, loaded: RwLock::new(None), master }
    }

    /// A new key of `alg`, its seed sealed when there is a master key.
    fn new_row(&self, alg: SigningAlg, now: i64) -> Result<SigningKeyRow, KeyError> {
        let mut row = new_key_row(alg, now)?;
        if let Some(k) = &self.master {
            row.seed = sealed::seal_marked(k, &seed_context(&row.kid), &row.seed);
        }
        Ok(row)
    }

    /// The row with its seed as it is used (opened if sealed).
    fn opened(&self, mut row: SigningKeyRow) -> Result<SigningKeyRow, KeyError> {
        row.seed = sealed::open_at_rest(self.master.as_ref(), &seed_context(&row.kid), &row.seed)
            .map_err(|e| KeyError::Sealed(row.kid.clone(), e))?;
        Ok(row)
    }

    /// Makes sure a key of each algorithm exists (first start), seals any key stored before a
    /// master key was set, and loads the ring.
    pub async fn init(&self, now: i64) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        for alg in SigningAlg::ALL {
            if !rows.iter().any(|r| r.retired_at.is_none() && r.alg == alg.as_str()) {
                self.store.insert_first_signing_key(&self.new_row(alg, now)?).await?;
            }
        }
        if let Some(k) = &self.master {
            for row in rows.iter().filter(|r| !sealed::is_marked(&r.seed)) {
                let sealed_seed = sealed::seal_marked(k, &seed_context(&row.kid), &row.seed);
                self.store.reseal(&row.kid, true, &row.seed, &sealed_seed).await?;
            }
        }
        self.reload(now).await
    }

    /// A new key of each algorithm; returns their ids.
    pub async fn rotate(&self, now: i64) -> Result<Vec<(SigningAlg, String)>, KeyError> {
        let mut kids = Vec::new();
        for alg in SigningAlg::ALL {
            let row = self.new_row(alg, now)?;
            self.store.rotate_signing_key(&row, now).await?;
            kids.push((alg, row.kid));
        }
        self.reload(now).await?;
        Ok(kids)
    }

    pub async fn reload(&self, now: i64) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        let mut loaded = Loaded { at: Instant::now(), active: HashMap::new(), verify: HashMap::new(), jwks: JwkSet { keys: Vec::new() } };
        // Rows come newest first. The signing key of an algorithm is its newest one published
        // for at least PUBLISH_LEAD_SECS, or, on a fresh install, the only one there is.
        let mut newest = HashMap::new();
        for row in rows {
            // A retired key may still be signing for PUBLISH_LEAD_SECS (until its successor
            // takes over), then its last token lives access_ttl more.
            let published = row.retired_at.is_none_or(|r| r + PUBLISH_LEAD_SECS + self.access_ttl + PUBLISH_MARGIN_SECS > now);
            if !published {
                continue;
            }
            let row = self.opened(row)?;
            let (alg, enc, jwk) = key_pair(&row)?;
            loaded.verify.insert(row.kid.clone(), (alg, DecodingKey::from_jwk(&jwk)?));
            loaded.jwks.keys.push(jwk);
            if !loaded.active.contains_key(&alg) && now - row.created_at >= PUBLISH_LEAD_SECS {
                loaded.active.insert(alg, (row.kid.clone(), signer(alg, &row, enc)?));
            } else if let std::collections::hash_map::Entry::Vacant(slot) = newest.entry(alg) {
                slot.insert((row.kid.clone(), signer(alg, &row, enc)?));
            }
        }
        for (alg, key) in newest {
            loaded.active.entry(alg).or_insert(key);
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded);
        Ok(())
    }

    async fn fresh(&self, now: i64) -> Result<(), KeyError> {
        let stale = self.loaded.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|l| l.at.elapsed() > CACHE_TTL);
        if stale { self.reload(now).await } else { Ok(()) }
    }

    /// An access token (RFC 9068 `at+jwt`), always EdDSA.
    pub async fn sign(&self, claims: &AccessClaims, now: i64) -> Result<String, KeyError> {
        self.sign_as(SigningAlg::EdDSA, Some("at+jwt"), claims, now).await
    }

    /// Any claims, signed with the active key of `alg`.
    pub async fn sign_as<T: Serialize>(&self, alg: SigningAlg, typ: Option<&str>, claims: &T, now: i64) -> Result<String, KeyError> {
        self.fresh(now).await?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let (kid, key) = guard.as_ref().and_then(|l| l.active.get(&alg)).ok_or(KeyError::NoActiveKey)?;
        let mut header = Header::new(alg.jwt());
        header.kid = Some(kid.clone());
        header.typ = typ.map(Into::into);
        key.sign(&header, claims)
    }

    /// Verifies an access token: EdDSA, signature and issuer with the published keys only (no
    /// `jku`, no other algorithm). Expiry is checked against the server's clock.
    pub async fn verify(&self, token: &str, issuer: &str, now: i64) -> Option<AccessClaims> {
        let claims: AccessClaims = self.verify_as(token, &[SigningAlg::EdDSA], issuer, now).await?;
        (claims.exp > now).then_some(claims)
    }

    /// Verifies signature and issuer of a token this server signed with one of `algs`, the
    /// algorithm pinned to the key's own; expiry is left to the caller (an id_token_hint may
    /// have expired).
    pub async fn verify_as<T: serde::de::DeserializeOwned>(&self, token: &str, algs: &[SigningAlg], issuer: &str, now: i64) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        self.fresh(now).await.ok()?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let (alg, key) = guard.as_ref()?.verify.get(&kid)?;
        if header.alg != alg.jwt() || !algs.contains(alg) {
            return None;
        }
        let mut v = Validation::new(alg.jwt());
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[issuer]);
        Some(jsonwebtoken::decode::<T>(token, key, &v).ok()?.claims)
    }

    pub async fn jwks(&self, now: i64) -> Result<JwkSet, KeyError> {
        self.fresh(now).await?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        Ok(guard.as_ref().map(|l| l.jwks.clone()).unwrap_or(JwkSet { keys: Vec::new() }))
    }
}
