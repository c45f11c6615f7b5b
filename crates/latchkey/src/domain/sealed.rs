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

#[cfg(test)]
mod tests {
    use super::*;

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
