//! PKCE (RFC 7636) as OAuth 2.1 has it: `S256` only. A `plain` challenge, or a challenge with no
//! method (which RFC 7636 reads as `plain`), is refused: with `plain` the challenge in the front
//! channel is the verifier itself.

use super::ParseError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

/// A parsed `code_challenge`: the base64url SHA-256 of a verifier, 43 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// `code_challenge` and `code_challenge_method` as the authorization request gave them.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, ParseError> {
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(ParseError::new("code_challenge_method", "must be S256 (plain is not accepted)"));
            }
            Some(_) => return Err(ParseError::new("code_challenge_method", "unsupported: use S256")),
        }
        let decoded = B64.decode(challenge).ok().filter(|b| b.len() == 32 && challenge.len() == 43);
        if decoded.is_none() {
            return Err(ParseError::new("code_challenge", "must be the base64url SHA-256 of the verifier (43 characters)"));
        }
        Ok(Self(challenge.to_owned()))
    }

    /// A challenge as stored (it was parsed when the code was issued).
    pub fn stored(challenge: String) -> Self {
        Self(challenge)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` is the one this challenge was made from. A malformed verifier (RFC
    /// 7636 §4.1: 43 to 128 unreserved characters) never is.
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_verifier(verifier) {
            return false;
        }
        let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
        super::secret::ct_eq(computed.as_bytes(), self.0.as_bytes())
    }
}

/// RFC 7636 §4.1: `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`, 43 to 128 of them.
pub fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier (what a client sends; used by tests and the CLI).
pub fn challenge_of(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies() {
        assert_eq!(challenge_of(VERIFIER), CHALLENGE);
        let c = CodeChallenge::parse(CHALLENGE, Some("S256")).unwrap();
        assert!(c.verify(VERIFIER));
        assert!(!c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"), "one letter off");
        assert!(!c.verify(CHALLENGE), "the challenge is not its own verifier");
    }

    #[test]
    fn plain_and_missing_methods_are_refused() {
        assert_eq!(CodeChallenge::parse(CHALLENGE, Some("plain")).unwrap_err().field, "code_challenge_method");
        assert_eq!(CodeChallenge::parse(CHALLENGE, None).unwrap_err().field, "code_challenge_method");
        assert!(CodeChallenge::parse(CHALLENGE, Some("s256")).is_err(), "the method is case-sensitive");
        assert!(CodeChallenge::parse("short", Some("S256")).is_err());
        assert!(CodeChallenge::parse(&format!("{CHALLENGE}A"), Some("S256")).is_err());
        assert!(CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM", Some("S256")).is_err(), "base64url only");
    }

    proptest! {
        #[test]
        fn every_wellformed_verifier_matches_only_its_own_challenge(v in "[A-Za-z0-9._~-]{43,128}", w in "[A-Za-z0-9._~-]{43,128}") {
            let c = CodeChallenge::parse(&challenge_of(&v), Some("S256")).unwrap();
            prop_assert!(c.verify(&v));
            prop_assert_eq!(c.verify(&w), v == w);
        }

        #[test]
        fn malformed_verifiers_never_verify(v in "\\PC{0,200}") {
            let c = CodeChallenge::stored(challenge_of(&v));
            prop_assert_eq!(c.verify(&v), is_verifier(&v));
        }
    }
}
