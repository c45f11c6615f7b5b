//! Random secrets and how they are kept: only hashes reach the store (SHA-256 for high-entropy
//! tokens, HMAC-SHA256 with a server key for anything derived), compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefixes make leaked tokens recognisable to secret scanners and to people.
pub const REFRESH_PREFIX: &str = "lk_rt_";
pub const WEB_SESSION_PREFIX: &str = "lk_ws_";
pub const CLIENT_SECRET_PREFIX: &str = "lk_cs_";

/// Fills `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // getrandom only fails when the OS has no entropy source at all; serving then would be unsafe.
    #[allow(clippy::expect_used, reason = "no entropy at all: serving on would be unsafe")]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// A new opaque token: `prefix` and 256 random bits, base64url.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", B64.encode(random_bytes::<32>()))
}

/// Parses a presented token: right prefix, then exactly 32 bytes of base64url. Anything else is
/// not a token we issued, and is refused before any lookup.
pub fn token_bytes(token: &str, prefix: &str) -> Option<[u8; 32]> {
    let body = token.strip_prefix(prefix)?;
    if body.len() != 43 {
        return None;
    }
    let v = B64.decode(body).ok()?;
    v.try_into().ok()
}

/// A new token that names the record it belongs to: `prefix`, the record's id, `.`, then 256
/// random bits in base64url. The store finds the record by its primary key, which new records
/// append to in order, instead of by a unique index on the hash: a random key there would
/// rewrite one random index page per new record (docs/performance.md). The id is not secret;
/// only the SHA-256 of the whole token is stored, and a presented token must match it.
pub fn new_located_token(prefix: &str, id: &str) -> String {
    debug_assert!(is_locator(id), "record ids in tokens are base64url or UUID text");
    format!("{prefix}{id}.{}", B64.encode(random_bytes::<32>()))
}

/// The record id of a presented located token, if the token has the shape `new_located_token`
/// gives: right prefix, an id of base64url characters, `.`, exactly 32 bytes of base64url.
pub fn located_token_id<'a>(token: &'a str, prefix: &str) -> Option<&'a str> {
    let (id, body) = token.strip_prefix(prefix)?.split_once('.')?;
    if !is_locator(id) || body.len() != 43 {
        return None;
    }
    let v = B64.decode(body).ok()?;
    (v.len() == 32).then_some(id)
}

/// Record ids that may be carried in a token: 1 to 64 base64url characters (UUIDs included).
fn is_locator(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// The stored form of a token: SHA-256 of the whole token string.
pub fn token_hash(token: &str) -> Vec<u8> {
    sha256(token.as_bytes())
}

pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The successor of a refresh token, derived rather than stored: `HMAC(key, predecessor)`.
/// This lets the grace window hand a client that retries with its immediate predecessor the
/// *same* successor (RFC 9700 §4.14.2 practice) while the store still holds only hashes.
pub fn refresh_successor(key: &[u8], predecessor: &str) -> String {
    let mac = hmac(key, &[b"latchkey refresh successor v1", predecessor.as_bytes()]);
    format!("{REFRESH_PREFIX}{}", B64.encode(mac))
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn b64url(data: &[u8]) -> String {
    B64.encode(data)
}

/// Standard Base64 with padding (HTTP Basic credentials).
pub fn b64std(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any id a record may have comes back out of its token; any other text is refused
        /// unless it has exactly the token's shape, and the parser never panics.
        #[test]
        fn located_tokens_round_trip_and_nothing_else_parses(id in "[A-Za-z0-9_-]{1,64}", junk in "\\PC{0,120}") {
            let t = new_located_token("lk_dc_", &id);
            prop_assert_eq!(located_token_id(&t, "lk_dc_"), Some(id.as_str()));
            let presented = format!("lk_dc_{junk}");
            if let Some(found) = located_token_id(&presented, "lk_dc_") {
                let secret = presented.strip_prefix(&format!("lk_dc_{found}.")).unwrap();
                prop_assert!(secret.len() == 43 && B64.decode(secret).is_ok_and(|v| v.len() == 32), "{}", presented);
            }
            prop_assert_eq!(located_token_id(&junk, "lk_dc_"), None::<&str>);
        }
    }

    #[test]
    fn located_tokens_carry_their_id_and_reject_lookalikes() {
        let id = "0192f3a4-5b6c-7d8e-9f00-112233445566";
        let t = new_located_token("lk_dc_", id);
        assert_eq!(located_token_id(&t, "lk_dc_"), Some(id));
        assert_ne!(t, new_located_token("lk_dc_", id), "the secret part is random");
        assert_eq!(located_token_id(&t, "lk_qs_"), None, "wrong prefix");
        let secret = t.rsplit_once('.').unwrap().1;
        for bad in [
            "lk_dc_".to_owned(),
            format!("lk_dc_{id}"),
            format!("lk_dc_.{secret}"),
            format!("lk_dc_{id}.{}", &secret[1..]),
            format!("lk_dc_{id}.{secret}A"),
            format!("lk_dc_{id}.{}", secret.replace(|c: char| c.is_ascii_alphanumeric(), "*")),
            format!("lk_dc_a b.{secret}"),
            format!("lk_dc_a.b.{secret}"),
            format!("lk_dc_{}.{secret}", "a".repeat(65)),
        ] {
            assert_eq!(located_token_id(&bad, "lk_dc_"), None, "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_lookalikes() {
        let t = new_token(REFRESH_PREFIX);
        assert_eq!(t.len(), REFRESH_PREFIX.len() + 43);
        assert!(token_bytes(&t, REFRESH_PREFIX).is_some());
        assert!(token_bytes(&t, WEB_SESSION_PREFIX).is_none());
        assert!(token_bytes(&format!("{t}A"), REFRESH_PREFIX).is_none());
        assert!(token_bytes("lk_rt_é", REFRESH_PREFIX).is_none());
        assert_ne!(new_token(REFRESH_PREFIX), new_token(REFRESH_PREFIX));
    }

    #[test]
    fn successor_is_deterministic_per_key() {
        let t = new_token(REFRESH_PREFIX);
        let s1 = refresh_successor(b"k1", &t);
        assert_eq!(s1, refresh_successor(b"k1", &t));
        assert_ne!(s1, refresh_successor(b"k2", &t));
        assert!(token_bytes(&s1, REFRESH_PREFIX).is_some());
    }

    #[test]
    fn constant_time_eq_matches_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
