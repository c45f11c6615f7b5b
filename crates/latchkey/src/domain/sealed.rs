//! Secrets the server must read back (TOTP secrets) are sealed with AES-256-GCM under a server
//! key before they reach the store: a copy of the database alone does not give them away.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// `nonce (12 bytes) || ciphertext+tag`. `context` (the owner's id) is bound in as associated
/// data, so a sealed value moved to another row does not open.
pub fn seal(key: &[u8; 32], context: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = super::secret::random_bytes::<12>();
    // Encryption only fails for inputs beyond 64 GiB.
    #[allow(clippy::expect_used, reason = "AES-GCM fails only for inputs beyond 64 GiB; TOTP secrets are bytes")]
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), aes_gcm::aead::Payload { msg: plain, aad: context })
        .expect("AES-GCM encrypts any small input");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

pub fn open(key: &[u8; 32], context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    Aes256Gcm::new(key.into()).decrypt(Nonce::from_slice(nonce), aes_gcm::aead::Payload { msg: ct, aad: context }).ok()
}

/// The prefix of a value sealed under the operator's master key (`server.master_key`), so that a
/// database written before the key was set is told apart and sealed on the next start.
pub const MARK: &[u8] = b"lk-sealed-v1:";

pub fn is_marked(stored: &[u8]) -> bool {
    stored.starts_with(MARK)
}

/// `MARK || seal(...)`.
pub fn seal_marked(key: &[u8; 32], context: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = MARK.to_vec();
    out.extend_from_slice(&seal(key, context, plain));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AtRestError {
    #[error("it is sealed under a master key, and the server has none (set server.master_key or server.master_key_file)")]
    NeedsKey,
    #[error("it does not open with this master key")]
    WrongKey,
}

/// A stored value as it is to be used: opened if sealed (with the master key), as it is if plain.
pub fn open_at_rest(key: Option<&[u8; 32]>, context: &[u8], stored: &[u8]) -> Result<Vec<u8>, AtRestError> {
    match (stored.strip_prefix(MARK), key) {
        (None, _) => Ok(stored.to_vec()),
        (Some(_), None) => Err(AtRestError::NeedsKey),
        (Some(sealed), Some(k)) => open(k, context, sealed).ok_or(AtRestError::WrongKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_values_open_only_with_their_key_and_context() {
        let (k, other) = ([1u8; 32], [2u8; 32]);
        let s = seal_marked(&k, b"code_hmac_key", b"secret");
        assert!(is_marked(&s) && !is_marked(b"secret"));
        assert_eq!(open_at_rest(Some(&k), b"code_hmac_key", &s).unwrap(), b"secret");
        assert_eq!(open_at_rest(None, b"code_hmac_key", &s), Err(AtRestError::NeedsKey));
        assert_eq!(open_at_rest(Some(&other), b"code_hmac_key", &s), Err(AtRestError::WrongKey));
        assert_eq!(open_at_rest(Some(&k), b"mfa_seal_key", &s), Err(AtRestError::WrongKey), "moved to another name");
        assert_eq!(open_at_rest(Some(&k), b"x", b"plain").unwrap(), b"plain", "a plain value is as it is");
    }

    #[test]
    fn round_trip_and_binding() {
        let key = [7u8; 32];
        let s = seal(&key, b"user-a", b"totp secret");
        assert_ne!(&s[12..], b"totp secret");
        assert_eq!(open(&key, b"user-a", &s).unwrap(), b"totp secret");
        assert!(open(&key, b"user-b", &s).is_none(), "moved to another user");
        assert!(open(&[8u8; 32], b"user-a", &s).is_none(), "another key");
        let mut t = s.clone();
        t[20] ^= 1;
        assert!(open(&key, b"user-a", &t).is_none(), "tampered");
    }
}
