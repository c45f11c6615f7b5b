//! The rules of passkeys that are not WebAuthn's own (webauthn-rs checks the ceremony): the
//! relying party a server is, what a passkey sign-in says it was, counters, names, step-up age.

use super::ParseError;

/// The relying party of a public URL: its host (the RP id) and the origin browsers will report.
/// `None` for a host that is an IP address: browsers refuse WebAuthn there (RP ids are domains).
pub fn relying_party(public_url: &str) -> Option<(String, url::Url)> {
    let url = url::Url::parse(public_url).ok()?;
    let host = url.domain()?.to_ascii_lowercase();
    let origin = url::Url::parse(&url.origin().ascii_serialization()).ok()?;
    Some((host, origin))
}

/// RFC 8176 `amr` of a sign-in with a user-verified passkey: `swk` for one that may be copied
/// between devices (backup eligible: synced by a platform or password manager), `hwk` for one
/// bound to its authenticator; `user` for the verification (PIN or biometric) it did.
pub fn amr(backup_eligible: bool) -> [&'static str; 2] {
    [if backup_eligible { "swk" } else { "hwk" }, "user"]
}

/// WebAuthn §7.2 step 22: a signature counter must go forward, unless the authenticator keeps
/// none (zero before and now). Anything else may be a cloned authenticator and is refused.
pub fn counter_ok(stored: u32, presented: u32) -> bool {
    presented > stored || (stored == 0 && presented == 0)
}

/// A step-up counts for approvals while it is at most `max_age` seconds old.
pub fn step_up_fresh(verified_at: Option<i64>, now: i64, max_age: i64) -> bool {
    verified_at.is_some_and(|at| at <= now && now - at <= max_age)
}

pub const MAX_NAME_CHARS: usize = 64;

/// A passkey's name as the account page shows it: trimmed, 1 to 64 characters, no control
/// characters. Empty means "the default name".
pub fn name(raw: Option<&str>, default: &str) -> Result<String, ParseError> {
    let n = raw.map(str::trim).unwrap_or("");
    if n.is_empty() {
        return Ok(default.to_owned());
    }
    if n.chars().count() > MAX_NAME_CHARS {
        return Err(ParseError::new("name", format!("at most {MAX_NAME_CHARS} characters")));
    }
    if n.chars().any(char::is_control) {
        return Err(ParseError::new("name", "no control characters"));
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relying_party_is_the_public_host() {
        let (id, origin) = relying_party("https://id.example.com/").unwrap();
        assert_eq!(id, "id.example.com");
        assert_eq!(origin.as_str(), "https://id.example.com/");
        let (id, origin) = relying_party("http://localhost:8080").unwrap();
        assert_eq!((id.as_str(), origin.as_str()), ("localhost", "http://localhost:8080/"));
        assert!(relying_party("http://127.0.0.1:8080").is_none(), "an IP address is no RP id");
        assert!(relying_party("http://[::1]:8080").is_none());
    }

    #[test]
    fn amr_says_what_kind_of_key() {
        assert_eq!(amr(true), ["swk", "user"]);
        assert_eq!(amr(false), ["hwk", "user"]);
    }

    #[test]
    fn names() {
        assert_eq!(name(None, "Passkey").unwrap(), "Passkey");
        assert_eq!(name(Some("  Work laptop "), "x").unwrap(), "Work laptop");
        assert!(name(Some(&"a".repeat(65)), "x").is_err());
        assert!(name(Some("a\u{7}b"), "x").is_err());
    }

    proptest! {
        #[test]
        fn a_counter_never_goes_back(stored in any::<u32>(), presented in any::<u32>()) {
            let ok = counter_ok(stored, presented);
            if presented < stored { prop_assert!(!ok); }
            if presented == stored { prop_assert_eq!(ok, stored == 0); }
            if presented > stored { prop_assert!(ok); }
        }

        #[test]
        fn step_up_expires_and_never_comes_from_the_future(at in 0i64..1_000_000, now in 0i64..1_000_000, age in 0i64..1000) {
            let fresh = step_up_fresh(Some(at), now, age);
            prop_assert_eq!(fresh, at <= now && now - at <= age);
            prop_assert!(!step_up_fresh(None, now, age));
        }
    }
}
