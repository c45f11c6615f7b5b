//! An authorization request (RFC 6749 §4.1.1, RFC 7636, OpenID Connect Core §3.1.2.1) parsed
//! into a type, with the OAuth 2.1 rules: `response_type=code` only, PKCE S256 (required of
//! public clients), exact redirect URIs. What is wrong decides where the answer goes: a request
//! whose client or redirect URI cannot be trusted is answered on our own page and never
//! redirected (RFC 6749 §4.1.2.1); anything else goes back to the client's redirect URI.

use super::Scope;
use super::pkce::CodeChallenge;
use super::redirect_uri::RedirectUri;
use serde::{Deserialize, Serialize};

/// The query (or the consent form, which carries it back) as it came.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawAuthorize {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub response_mode: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

/// `prompt` (OpenID Connect Core §3.1.2.1): a set; `none` goes with nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// What the client registered, as the parser needs it.
pub struct ClientFacts<'a> {
    pub redirect_uris: &'a [RedirectUri],
    pub public: bool,
    pub allowed_scope: &'a Scope,
}

#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI as presented (it matched a registered one); the token request must repeat it.
    pub redirect_uri: String,
    pub scope: Scope,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

impl AuthorizationRequest {
    pub fn is_openid(&self) -> bool {
        self.scope.contains("openid")
    }
}

/// Why a request is refused, and so where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client or the redirect URI cannot be trusted: say it on our page, redirect nowhere.
    Page(String),
    /// Back to the (verified) redirect URI with an RFC 6749 §4.1.2.1 error.
    Redirect { redirect_uri: String, state: Option<String>, error: &'static str, description: String },
}

const MAX_PARAM: usize = 512;

/// The redirect URI to answer on: the presented one if it is registered, or the only registered
/// one when none was presented (RFC 6749 §3.1.2.3).
pub fn redirect_target(raw: &RawAuthorize, client: &ClientFacts<'_>) -> Result<String, Refusal> {
    match raw.redirect_uri.as_deref() {
        Some(presented) => RedirectUri::find(client.redirect_uris, presented, client.public)
            .map(|_| presented.to_owned())
            .ok_or_else(|| Refusal::Page("The redirect URI is not registered for this application.".into())),
        None => match client.redirect_uris {
            [only] => Ok(only.as_str().to_owned()),
            [] => Err(Refusal::Page("This application has no redirect URI registered: it cannot sign in through the browser.".into())),
            _ => Err(Refusal::Page("The request names no redirect URI, and the application has several.".into())),
        },
    }
}

/// Parses the request of a client known to exist (`client_id` already looked up).
pub fn parse(raw: &RawAuthorize, client: &ClientFacts<'_>) -> Result<AuthorizationRequest, Refusal> {
    let redirect_uri = redirect_target(raw, client)?;
    let state = raw.state.clone().filter(|s| !s.is_empty());
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.into(),
    };
    for (name, v) in [("state", &raw.state), ("nonce", &raw.nonce), ("login_hint", &raw.login_hint)] {
        if v.as_ref().is_some_and(|v| v.len() > MAX_PARAM) {
            return Err(refuse("invalid_request", &format!("{name} is longer than {MAX_PARAM} characters")));
        }
    }
    if raw.request.is_some() {
        return Err(refuse("request_not_supported", "request objects are not supported"));
    }
    if raw.request_uri.is_some() {
        return Err(refuse("request_uri_not_supported", "request_uri is not supported"));
    }
    match raw.response_type.as_deref() {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "response_type is required")),
        Some(_) => return Err(refuse("unsupported_response_type", "only response_type=code is supported")),
    }
    if raw.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(refuse("invalid_request", "only response_mode=query is supported"));
    }
    let scope = Scope::parse(raw.scope.as_deref().unwrap_or("")).map_err(|e| refuse("invalid_scope", &e.message))?;
    if scope.is_empty() {
        return Err(refuse("invalid_scope", "scope is required"));
    }
    if !scope.is_subset_of(client.allowed_scope) {
        return Err(refuse("invalid_scope", "the application may not ask for that scope"));
    }
    let code_challenge = match (&raw.code_challenge, &raw.code_challenge_method) {
        (Some(c), m) => Some(CodeChallenge::parse(c, m.as_deref()).map_err(|e| refuse("invalid_request", &e.message))?),
        (None, Some(_)) => return Err(refuse("invalid_request", "code_challenge_method without code_challenge")),
        (None, None) if client.public => return Err(refuse("invalid_request", "code_challenge (PKCE, S256) is required")),
        (None, None) => None,
    };
    let prompt = parse_prompt(raw.prompt.as_deref()).map_err(|d| refuse("invalid_request", d))?;
    let max_age = match raw.max_age.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| refuse("invalid_request", "max_age must be seconds"))?),
    };
    let nonce = raw.nonce.clone().filter(|n| !n.is_empty());
    Ok(AuthorizationRequest {
        client_id: raw.client_id.clone().unwrap_or_default(),
        redirect_uri: redirect_uri.clone(),
        scope,
        state: state.clone(),
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: raw.login_hint.clone(),
    })
}

fn parse_prompt(raw: Option<&str>) -> Result<Prompt, &'static str> {
    let mut p = Prompt::default();
    for word in raw.unwrap_or("").split(' ').filter(|w| !w.is_empty()) {
        match word {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            "select_account" => {}
            _ => return Err("prompt must be none, login, consent or select_account"),
        }
    }
    if p.none && (p.login || p.consent) {
        return Err("prompt=none goes with no other value");
    }
    Ok(p)
}

/// Whether the user must sign in (again) before this request can be answered.
pub fn needs_login(prompt: Prompt, max_age: Option<i64>, auth_time: i64, authorized_after: Option<i64>, now: i64) -> bool {
    // A sign-in that happened after the request first came satisfies prompt=login, and max_age
    // too (with max_age=0 nothing else could).
    let relogged = authorized_after.is_some_and(|t| auth_time >= t);
    let fresh_enough = max_age.is_none_or(|m| now - auth_time <= m) || relogged;
    !fresh_enough || (prompt.login && !relogged)
}

/// The query an answer carries to the redirect URI (RFC 6749 §4.1.2, RFC 9207 `iss`).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        sep = '&';
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(public: bool) -> (Vec<RedirectUri>, Scope, bool) {
        (vec![RedirectUri::register("https://app.example/cb", public).unwrap()], Scope::parse("openid email profile").unwrap(), public)
    }

    fn raw() -> RawAuthorize {
        RawAuthorize {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            scope: Some("openid email".into()),
            state: Some("s1".into()),
            code_challenge: Some(super::super::pkce::challenge_of("a".repeat(43).as_str())),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        }
    }

    fn run(r: &RawAuthorize, public: bool) -> Result<AuthorizationRequest, Refusal> {
        let (uris, scope, public) = client(public);
        parse(r, &ClientFacts { redirect_uris: &uris, public, allowed_scope: &scope })
    }

    fn error_of(r: Result<AuthorizationRequest, Refusal>) -> &'static str {
        match r {
            Err(Refusal::Redirect { error, .. }) => error,
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_parses() {
        let a = run(&raw(), true).unwrap();
        assert!(a.is_openid());
        assert_eq!(a.state.as_deref(), Some("s1"));
        assert_eq!(a.redirect_uri, "https://app.example/cb");
    }

    #[test]
    fn untrusted_redirects_are_answered_on_our_page() {
        for bad in ["https://app.example/cb/", "https://app.example/cb?x=1", "https://evil.example/cb", "https://app.example/cb#f"] {
            let r = RawAuthorize { redirect_uri: Some(bad.into()), ..raw() };
            assert!(matches!(run(&r, true), Err(Refusal::Page(_))), "{bad}");
        }
        // Missing but only one registered: that one.
        let r = RawAuthorize { redirect_uri: None, ..raw() };
        assert_eq!(run(&r, true).unwrap().redirect_uri, "https://app.example/cb");
    }

    #[test]
    fn the_rest_goes_back_with_an_error_and_the_state() {
        let r = RawAuthorize { response_type: Some("token".into()), ..raw() };
        assert_eq!(error_of(run(&r, true)), "unsupported_response_type");
        let r = RawAuthorize { code_challenge: None, code_challenge_method: None, ..raw() };
        assert_eq!(error_of(run(&r, true)), "invalid_request");
        assert!(run(&r, false).is_ok(), "PKCE is optional for a confidential client");
        let r = RawAuthorize { code_challenge_method: Some("plain".into()), ..raw() };
        assert_eq!(error_of(run(&r, true)), "invalid_request");
        let r = RawAuthorize { scope: Some("openid admin".into()), ..raw() };
        assert_eq!(error_of(run(&r, true)), "invalid_scope");
        let r = RawAuthorize { prompt: Some("none login".into()), ..raw() };
        assert_eq!(error_of(run(&r, true)), "invalid_request");
        let r = RawAuthorize { max_age: Some("-1".into()), ..raw() };
        assert_eq!(error_of(run(&r, true)), "invalid_request");
        let r = RawAuthorize { request: Some("x".into()), ..raw() };
        match run(&r, true) {
            Err(Refusal::Redirect { state, error, .. }) => {
                assert_eq!(error, "request_not_supported");
                assert_eq!(state.as_deref(), Some("s1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn login_is_needed_when_stale_or_asked_for() {
        let p = Prompt::default();
        assert!(!needs_login(p, None, 100, None, 200));
        assert!(needs_login(p, Some(50), 100, None, 200));
        assert!(!needs_login(p, Some(100), 100, None, 200));
        let login = Prompt { login: true, ..p };
        assert!(needs_login(login, None, 100, None, 200));
        assert!(needs_login(login, None, 100, Some(150), 200));
        assert!(!needs_login(login, None, 160, Some(150), 200));
        assert!(!needs_login(p, Some(0), 160, Some(150), 200), "max_age=0 is met by the sign-in it asked for");
    }

    #[test]
    fn answers_keep_the_registered_query() {
        assert_eq!(redirect_with("https://a.example/cb", &[("code", "x y"), ("state", "&")]), "https://a.example/cb?code=x+y&state=%26");
        assert_eq!(redirect_with("https://a.example/cb?t=1", &[("code", "c")]), "https://a.example/cb?t=1&code=c");
    }
}
