//! The claims checks of an upstream's id_token (OpenID Connect Core §3.1.3.7), once its
//! signature is verified: who issued it, for whom, when, and for which sign-in. Time is an
//! argument; the signature is `upstream::oidc`'s.

use serde::Deserialize;

/// Clock difference tolerated between the upstream and this server, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// The claims read from an id_token; the rest are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    /// One audience or several.
    #[serde(default)]
    pub aud: Audience,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub nonce: Option<String>,
    pub azp: Option<String>,
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_verified: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn all(&self) -> &[String] {
        match self {
            Audience::None => &[],
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(v) => v,
        }
    }
}

/// Some issuers send `"email_verified": "true"`; anything but true or "true" is false.
pub fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) => Some(s == "true"),
        serde_json::Value::Null => None,
        _ => Some(false),
    })
}

/// What the id_token must be for this sign-in.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

/// Why an id_token was refused, in words for the operator's log and the person's page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the id_token was issued by `{0}`, not this provider")]
    Issuer(String),
    #[error("the id_token is not for this server (audience)")]
    Audience,
    #[error("the id_token was issued to another client (azp)")]
    AuthorizedParty,
    #[error("the id_token has expired")]
    Expired,
    #[error("the id_token is dated in the future")]
    NotYetValid,
    #[error("the id_token belongs to another sign-in (nonce)")]
    Nonce,
    #[error("the id_token names no subject")]
    Subject,
}

pub fn check(c: &Claims, e: &Expected<'_>) -> Result<(), Refused> {
    // Exact string comparison, as Core §3.1.3.7 (2) says: no normalising of slashes.
    if c.iss != e.issuer {
        return Err(Refused::Issuer(c.iss.chars().take(200).collect()));
    }
    let aud = c.aud.all();
    if !aud.iter().any(|a| a == e.client_id) {
        return Err(Refused::Audience);
    }
    // Several audiences: the one it was issued to must be named, and be us (§3.1.3.7 (4), (5)).
    if (aud.len() > 1 || c.azp.is_some()) && c.azp.as_deref() != Some(e.client_id) {
        return Err(Refused::AuthorizedParty);
    }
    match c.exp {
        Some(exp) if exp + LEEWAY_SECS > e.now => {}
        _ => return Err(Refused::Expired),
    }
    if c.iat.is_some_and(|iat| iat > e.now + LEEWAY_SECS) {
        return Err(Refused::NotYetValid);
    }
    // The nonce ties the token to the sign-in this browser started; compared in constant time.
    match &c.nonce {
        Some(n) if super::secret::ct_eq(n.as_bytes(), e.nonce.as_bytes()) => {}
        _ => return Err(Refused::Nonce),
    }
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err(Refused::Subject);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Claims {
        serde_json::from_value(serde_json::json!({
            "iss": "https://idp.example", "sub": "u1", "aud": "lk", "exp": 1_000, "iat": 900, "nonce": "n1",
            "email": "a@example.com", "email_verified": "true"
        }))
        .unwrap()
    }
    const E: Expected<'static> = Expected { issuer: "https://idp.example", client_id: "lk", nonce: "n1", now: 950 };

    #[test]
    fn a_good_token_passes_and_each_claim_can_refuse_it() {
        assert_eq!(check(&good(), &E), Ok(()));
        assert_eq!(good().email_verified, Some(true));
        let with = |f: fn(&mut Claims)| {
            let mut c = good();
            f(&mut c);
            check(&c, &E)
        };
        assert!(matches!(with(|c| c.iss = "https://idp.example/".into()), Err(Refused::Issuer(_))));
        assert_eq!(with(|c| c.aud = Audience::One("other".into())), Err(Refused::Audience));
        assert_eq!(with(|c| c.aud = Audience::None), Err(Refused::Audience));
        assert_eq!(with(|c| c.aud = Audience::Many(vec!["lk".into(), "other".into()])), Err(Refused::AuthorizedParty));
        assert_eq!(
            with(|c| {
                c.aud = Audience::Many(vec!["lk".into(), "other".into()]);
                c.azp = Some("lk".into())
            }),
            Ok(())
        );
        assert_eq!(with(|c| c.azp = Some("other".into())), Err(Refused::AuthorizedParty));
        assert_eq!(with(|c| c.exp = Some(880)), Err(Refused::Expired));
        assert_eq!(with(|c| c.exp = None), Err(Refused::Expired));
        assert_eq!(with(|c| c.iat = Some(1_100)), Err(Refused::NotYetValid));
        assert_eq!(with(|c| c.nonce = Some("n2".into())), Err(Refused::Nonce));
        assert_eq!(with(|c| c.nonce = None), Err(Refused::Nonce));
        assert_eq!(with(|c| c.sub = String::new()), Err(Refused::Subject));
    }

    #[test]
    fn the_leeway_is_a_minute_either_way() {
        let mut c = good();
        c.exp = Some(E.now - LEEWAY_SECS + 1);
        assert_eq!(check(&c, &E), Ok(()));
        c.exp = Some(E.now - LEEWAY_SECS);
        assert_eq!(check(&c, &E), Err(Refused::Expired));
    }
}
