//! Upstream identity providers for the "Sign in with …" tests:
//!
//! - [`Corp`]: a REAL OpenID Connect issuer, panva's `oidc-provider`, run by `e2e/upstream.mjs`
//!   (users alice: verified e-mail, bob: unverified, carol: verified). Latchkey registers at it
//!   through RFC 7591 once it knows its own port.
//! - [`Rogue`]: an issuer this test controls, to send what no honest issuer sends (an id_token
//!   for another audience, expired, unsigned, signed with the wrong key, with an old nonce…).
//!   It is the attacker, so it is ours.
//! - [`GitHubStandIn`]: GitHub's three endpoints (authorize, access_token, the user API), as
//!   GitHub documents them, for the preset.

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt;

pub const CORP_SECRET: &str = "corp-secret-corp-secret-corp-secret-0001";
pub const CORP_CLIENT: &str = "latchkey";

/// An OpenID Connect upstream `id` at `issuer`, as Latchkey is registered at Corp ("Corp").
pub fn corp_settings(id: &str, issuer: &str, auto_create: bool) -> latchkey::config::UpstreamSettings {
    latchkey::config::UpstreamSettings {
        id: id.into(),
        kind: latchkey::config::UpstreamKind::Oidc,
        issuer: issuer.into(),
        client_id: CORP_CLIENT.into(),
        client_secret: CORP_SECRET.into(),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        display_name: "Corp".into(),
        auto_create,
        authorization_endpoint: String::new(),
        token_endpoint: String::new(),
        api_url: String::new(),
    }
}
pub const UPSTREAM_PASSWORD: &str = "upstream-pw";

fn e2e_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

/// A running `e2e/upstream.mjs`; killed when dropped.
pub struct Corp {
    pub issuer: String,
    _child: tokio::process::Child,
}

impl Corp {
    /// None (after a loud notice) when Node or `e2e/node_modules/oidc-provider` is missing and
    /// `E2E_REQUIRED` is not set.
    pub async fn start() -> Option<Corp> {
        let dir = e2e_dir();
        let have_node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
        if !have_node || !dir.join("node_modules/oidc-provider").is_dir() {
            let why = "needs `node` and e2e/node_modules/oidc-provider (cd e2e && npm ci)";
            assert!(std::env::var_os("E2E_REQUIRED").is_none(), "E2E_REQUIRED is set but the upstream issuer cannot run: {why}");
            eprintln!("\n!!!!!!!! SKIPPED: upstream sign-in test against oidc-provider not run: {why} !!!!!!!!\n");
            return None;
        }
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("upstream.mjs"))
            .env("PORT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("upstream.mjs says LISTENING within 30 s")
            .unwrap()
            .expect("a LISTENING line");
        let issuer = line.strip_prefix("LISTENING ").expect("LISTENING <issuer>").trim().to_owned();
        Some(Corp { issuer, _child: child })
    }

    /// Registers a relying party (RFC 7591) with this id, secret and callback.
    pub async fn register(&self, client_id: &str, redirect_uri: &str) {
        let body = json!({
            "client_id": client_id, "client_secret": CORP_SECRET, "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"], "response_types": ["code"],
        });
        let r = reqwest::Client::new().post(format!("{}/reg", self.issuer)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "registration at the upstream: {}", r.text().await.unwrap_or_default());
    }

    /// Changes what the upstream says about a user (its e-mail, whether verified).
    pub async fn set_user(&self, login: &str, email: &str, verified: bool) {
        let r = reqwest::Client::new()
            .post(format!("{}/test/users/{login}", self.issuer))
            .json(&json!({ "email": email, "email_verified": verified }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

/// A browser: its own cookies (for both sites, as a browser's), no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").unwrap_or_else(|| panic!("a redirect, got {}", r.status())).to_str().unwrap().to_owned()
}

/// Resolves a Location against the URL it came from.
pub fn resolve(from: &str, loc: &str) -> String {
    url::Url::parse(from).unwrap().join(loc).unwrap().to_string()
}

/// Follows redirects from `url` with GETs until one leads to a URL starting with `stop`
/// (returned, not fetched) or a page that is not a redirect (returned with its body).
pub async fn follow(b: &reqwest::Client, mut url: String, stop: &str) -> Result<String, (String, u16, String)> {
    for _ in 0..10 {
        if url.starts_with(stop) {
            return Ok(url);
        }
        let r = b.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = resolve(&url, &location(&r));
        } else {
            let status = r.status().as_u16();
            return Err((url, status, r.text().await.unwrap()));
        }
    }
    panic!("too many redirects");
}

/// Drives a browser through Corp's login page as `login`, from Latchkey's start URL, and stops
/// at Latchkey's callback URL (not fetched, so a test can deliver it where it likes).
pub async fn corp_callback_url(b: &reqwest::Client, base: &str, start_path: &str, login: &str) -> String {
    let upstream = {
        let r = b.get(format!("{base}{start_path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "start: {}", r.text().await.unwrap_or_default());
        location(&r)
    };
    through_corp_login(b, base, upstream, login).await
}

/// From the upstream's authorization URL: its login page, then on to Latchkey's callback.
pub async fn through_corp_login(b: &reqwest::Client, base: &str, upstream: String, login: &str) -> String {
    let (page_url, status, page) = follow(b, upstream, base).await.expect_err("the upstream's login page");
    assert_eq!(status, 200, "{page_url}: {page}");
    assert!(page.contains("id=\"login\""), "the upstream's login form: {page}");
    let action = page.split("action=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = b.post(resolve(&page_url, &action)).form(&[("login", login), ("password", UPSTREAM_PASSWORD)]).send().await.unwrap();
    assert_eq!(r.status(), 303, "upstream login: {}", r.text().await.unwrap_or_default());
    let next = resolve(&page_url, &location(&r));
    follow(b, next, base).await.unwrap_or_else(|e| panic!("back to Latchkey: {e:?}"))
}

// --- the rogue issuer ----------------------------------------------------------------------

/// What the rogue issuer's next id_token gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Honest,
    WrongAudience,
    WrongIssuer,
    Expired,
    BadSignature,
    AlgNone,
    /// Signed HS256 with the client secret (a key the RP must not accept in place of the JWKS).
    SharedSecret,
    /// The nonce of the sign-in before this one.
    ReplayedNonce,
    /// The authorization response names another issuer (RFC 9207).
    WrongIssParam,
}

pub struct RogueState {
    pub issuer: String,
    pub mode: Mode,
    pub email: String,
    pub email_verified: bool,
    pub sub: String,
    key_pkcs8: Vec<u8>,
    public: Vec<u8>,
    /// code → nonce of its authorization request.
    codes: HashMap<String, String>,
    last_nonce: Option<String>,
    previous_nonce: Option<String>,
}

pub struct Rogue {
    pub issuer: String,
    pub state: Arc<Mutex<RogueState>>,
}

impl Rogue {
    pub async fn start() -> Rogue {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        let state = Arc::new(Mutex::new(RogueState {
            issuer: issuer.clone(),
            mode: Mode::Honest,
            email: "eve@example.com".into(),
            email_verified: true,
            sub: "eve".into(),
            key_pkcs8: pkcs8.as_ref().to_vec(),
            public,
            codes: HashMap::new(),
            last_nonce: None,
            previous_nonce: None,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(rogue_discovery))
            .route("/jwks", get(rogue_jwks))
            .route("/auth", get(rogue_authorize))
            .route("/token", post(rogue_token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Rogue { issuer, state }
    }

    pub fn set(&self, f: impl FnOnce(&mut RogueState)) {
        f(&mut self.state.lock().unwrap());
    }
}

type Shared = State<Arc<Mutex<RogueState>>>;

async fn rogue_discovery(State(s): Shared) -> Json<Value> {
    let iss = s.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": iss, "authorization_endpoint": format!("{iss}/auth"), "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"), "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"], "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn rogue_jwks(State(s): Shared) -> Json<Value> {
    let x = b64(&s.lock().unwrap().public);
    Json(json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "rogue-1", "alg": "EdDSA", "use": "sig" }] }))
}

async fn rogue_authorize(State(s): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    let code = b64(&rand_bytes());
    let nonce = q.get("nonce").cloned().unwrap_or_default();
    st.previous_nonce = st.last_nonce.replace(nonce.clone());
    st.codes.insert(code.clone(), nonce);
    let iss = if st.mode == Mode::WrongIssParam { "https://elsewhere.example".to_owned() } else { st.issuer.clone() };
    let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", &q["state"]).append_pair("iss", &iss);
    Redirect::to(back.as_str()).into_response()
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

async fn rogue_token(State(s): Shared, Form(f): Form<HashMap<String, String>>) -> Response {
    let st = s.lock().unwrap();
    let Some(nonce) = st.codes.get(f.get("code").map_or("", String::as_str)).cloned() else {
        return (axum::http::StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" }))).into_response();
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let client_id = f.get("client_id").cloned().unwrap_or_default();
    let mut claims = json!({
        "iss": st.issuer, "sub": st.sub, "aud": client_id, "exp": now + 300, "iat": now, "nonce": nonce,
        "email": st.email, "email_verified": st.email_verified,
    });
    match st.mode {
        Mode::WrongAudience => claims["aud"] = json!("someone-else"),
        Mode::WrongIssuer => claims["iss"] = json!("https://elsewhere.example"),
        Mode::Expired => {
            claims["exp"] = json!(now - 600);
            claims["iat"] = json!(now - 900);
        }
        Mode::ReplayedNonce => claims["nonce"] = json!(st.previous_nonce.clone().unwrap_or_default()),
        _ => {}
    }
    let header = |alg: &str| json!({ "alg": alg, "kid": "rogue-1", "typ": "JWT" });
    let id_token = match st.mode {
        Mode::AlgNone => format!("{}.{}.", b64(header("none").to_string().as_bytes()), b64(claims.to_string().as_bytes())),
        Mode::SharedSecret => {
            let key = jsonwebtoken::EncodingKey::from_secret(f.get("client_secret").map_or("", String::as_str).as_bytes());
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some("rogue-1".into());
            jsonwebtoken::encode(&h, &claims, &key).unwrap()
        }
        Mode::BadSignature => {
            // Signed by a key that is not the one published.
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let other = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            sign_ed(other.as_ref(), &claims)
        }
        _ => sign_ed(&st.key_pkcs8, &claims),
    };
    Json(json!({ "access_token": "rogue-at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token })).into_response()
}

fn sign_ed(pkcs8: &[u8], claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("rogue-1".into());
    jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_ed_der(pkcs8)).unwrap()
}

// --- GitHub's endpoints --------------------------------------------------------------------

pub struct GitHubState {
    pub client_secret: String,
    pub user_id: u64,
    pub emails: Value,
    /// code → (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
}

pub struct GitHubStandIn {
    /// The "web" URL, as `issuer` of a GitHub Enterprise Server preset.
    pub url: String,
    pub state: Arc<Mutex<GitHubState>>,
}

impl GitHubStandIn {
    pub async fn start(client_secret: &str, user_id: u64, emails: Value) -> GitHubStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(GitHubState { client_secret: client_secret.into(), user_id, emails, codes: HashMap::new() }));
        let app = Router::new()
            .route("/login/oauth/authorize", get(gh_authorize))
            .route("/login/oauth/access_token", post(gh_token))
            .route("/api/v3/user", get(gh_user))
            .route("/api/v3/user/emails", get(gh_emails))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        GitHubStandIn { url, state }
    }
}

type Gh = State<Arc<Mutex<GitHubState>>>;

async fn gh_authorize(State(s): Gh, Query(q): Query<HashMap<String, String>>) -> Response {
    let code = b64(&rand_bytes());
    let challenge = q.get("code_challenge").cloned().unwrap_or_default();
    s.lock().unwrap().codes.insert(code.clone(), (challenge, q["redirect_uri"].clone()));
    let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", &q["state"]);
    Redirect::to(back.as_str()).into_response()
}

/// As GitHub: 200 with an `error` field for a bad code; JSON because the client asked for it.
async fn gh_token(State(s): Gh, Form(f): Form<HashMap<String, String>>) -> Json<Value> {
    let mut st = s.lock().unwrap();
    let Some((challenge, redirect_uri)) = st.codes.remove(f.get("code").map_or("", String::as_str)) else {
        return Json(json!({ "error": "bad_verification_code" }));
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let computed = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    if computed != challenge || f.get("client_secret") != Some(&st.client_secret) || f.get("redirect_uri") != Some(&redirect_uri) {
        return Json(json!({ "error": "incorrect_client_credentials" }));
    }
    Json(json!({ "access_token": "gho_standin", "token_type": "bearer", "scope": "read:user,user:email" }))
}

fn gh_authorized(h: &axum::http::HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gho_standin")
}

async fn gh_user(State(s): Gh, h: axum::http::HeaderMap) -> Response {
    if !gh_authorized(&h) {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    }
    let id = s.lock().unwrap().user_id;
    Json(json!({ "id": id, "login": "octocat", "name": "The Octocat", "email": null })).into_response()
}

async fn gh_emails(State(s): Gh, h: axum::http::HeaderMap) -> Response {
    if !gh_authorized(&h) {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    }
    Json(s.lock().unwrap().emails.clone()).into_response()
}
