//! Ed25519 signing keys for access tokens: generated on first start, kept in the store (so every
//! instance signs with the same key), rotated by `latchkey keys rotate`. A retired key stays in
//! the JWKS until the last token it signed has expired.

use crate::domain::secret;
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
    active: Option<(String, EncodingKey)>,
    verify: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

pub struct KeyRing {
    store: DynStore,
    access_ttl: i64,
    loaded: RwLock<Option<Loaded>>,
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
}

pub fn new_key_row(now: i64) -> SigningKeyRow {
    SigningKeyRow {
        kid: secret::b64url(&secret::random_bytes::<12>()),
        seed: secret::random_bytes::<32>().to_vec(),
        created_at: now,
        retired_at: None,
    }
}

fn key_pair(row: &SigningKeyRow) -> Result<(EncodingKey, Jwk), KeyError> {
    if row.seed.len() != 32 {
        return Err(KeyError::BadKey(row.kid.clone()));
    }
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&row.seed);
    let enc = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::EdDSA)?;
    jwk.common.key_id = Some(row.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok((enc, jwk))
}

impl KeyRing {
    pub fn new(store: DynStore, access_ttl: i64) -> Self {
        Self { store, access_ttl, loaded: RwLock::new(None) }
    }

    /// Makes sure a key exists (first start) and loads the ring.
    pub async fn init(&self, now: i64) -> Result<(), KeyError> {
        self.store.insert_first_signing_key(&new_key_row(now)).await?;
        self.reload(now).await
    }

    pub async fn rotate(&self, now: i64) -> Result<String, KeyError> {
        let row = new_key_row(now);
        self.store.rotate_signing_key(&row, now).await?;
        self.reload(now).await?;
        Ok(row.kid)
    }

    pub async fn reload(&self, now: i64) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        let mut loaded = Loaded { at: Instant::now(), active: None, verify: HashMap::new(), jwks: JwkSet { keys: Vec::new() } };
        // Rows come newest first. The signing key is the newest one published for at least
        // PUBLISH_LEAD_SECS, or, on a fresh install, the only one there is.
        let mut newest = None;
        for row in rows {
            // A retired key may still be signing for PUBLISH_LEAD_SECS (until its successor
            // takes over), then its last token lives access_ttl more.
            let published = row.retired_at.is_none_or(|r| r + PUBLISH_LEAD_SECS + self.access_ttl + PUBLISH_MARGIN_SECS > now);
            if !published {
                continue;
            }
            let (enc, jwk) = key_pair(&row)?;
            loaded.verify.insert(row.kid.clone(), DecodingKey::from_jwk(&jwk)?);
            loaded.jwks.keys.push(jwk);
            if loaded.active.is_none() && now - row.created_at >= PUBLISH_LEAD_SECS {
                loaded.active = Some((row.kid.clone(), enc));
            } else if newest.is_none() {
                newest = Some((row.kid.clone(), enc));
            }
        }
        if loaded.active.is_none() {
            loaded.active = newest;
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded);
        Ok(())
    }

    async fn fresh(&self, now: i64) -> Result<(), KeyError> {
        let stale = self.loaded.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|l| l.at.elapsed() > CACHE_TTL);
        if stale { self.reload(now).await } else { Ok(()) }
    }

    pub async fn sign(&self, claims: &AccessClaims, now: i64) -> Result<String, KeyError> {
        self.fresh(now).await?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let (kid, key) = guard.as_ref().and_then(|l| l.active.as_ref()).ok_or(KeyError::NoActiveKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, claims, key)?)
    }

    /// Verifies signature and issuer with the published keys only (no `jku`, no other
    /// algorithm). Expiry is checked by the caller against the server's clock.
    pub async fn verify(&self, token: &str, issuer: &str, now: i64) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let kid = header.kid?;
        self.fresh(now).await.ok()?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let key = guard.as_ref()?.verify.get(&kid)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[issuer]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &v).ok()?;
        (data.claims.exp > now).then_some(data.claims)
    }

    pub async fn jwks(&self, now: i64) -> Result<JwkSet, KeyError> {
        self.fresh(now).await?;
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        Ok(guard.as_ref().map(|l| l.jwks.clone()).unwrap_or(JwkSet { keys: Vec::new() }))
    }
}
