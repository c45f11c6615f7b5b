//! GitHub (and GitHub Enterprise Server) over plain OAuth 2.0: no id_token, so the identity is
//! the numeric user id from `GET /user` (the login name can be changed and reused by someone
//! else), and the e-mail is the primary address only if `GET /user/emails` says it is verified.

use super::{Begin, Finish, Identity, Provider, Upstream, UpstreamError, UpstreamResult, json};
use serde::Deserialize;

pub struct GitHub;

#[async_trait::async_trait]
impl Provider for GitHub {
    /// GitHub has no nonce (there is no id_token to carry it back).
    async fn authorization_url(&self, up: &Upstream, b: &Begin<'_>, _now: i64) -> UpstreamResult<String> {
        super::authorization_request(up, &up.settings.authorization_endpoint, b, &[])
    }

    async fn finish(&self, up: &Upstream, f: &Finish<'_>) -> UpstreamResult<Identity> {
        finish(up, f).await
    }

    fn authorization_endpoint(&self, up: &Upstream) -> Option<String> {
        Some(up.settings.authorization_endpoint.clone())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

async fn finish(up: &Upstream, f: &Finish<'_>) -> UpstreamResult<Identity> {
    let s = &up.settings;
    let form = [
        ("client_id", s.client_id.as_str()),
        ("client_secret", s.client_secret.as_str()),
        ("code", f.code),
        ("redirect_uri", f.redirect_uri),
        ("code_verifier", f.code_verifier),
    ];
    // GitHub answers errors with 200 and an `error` field; JSON only when asked for.
    let req = up.http.post(&s.token_endpoint).header(reqwest::header::ACCEPT, "application/json").form(&form);
    let resp = up.send(req, "token").await?;
    let token: TokenResponse = json(resp, "token").await?;
    let access_token = match (token.access_token, token.error) {
        (Some(t), None) => t,
        (_, error) => {
            let error = error.unwrap_or_default();
            tracing::info!(upstream = %s.id, error, "GitHub refused the code");
            return Err(UpstreamError::Rejected(format!("GitHub refused the sign-in's code ({error})")));
        }
    };
    let api = s.api_url.trim_end_matches('/');
    let get = |path: &str| {
        up.http
            .get(format!("{api}{path}"))
            .bearer_auth(&access_token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    };
    let resp = up.send(get("/user"), "user").await?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!("GitHub's /user answered {}", resp.status())));
    }
    let user: User = json(resp, "user").await?;
    // Without the `user:email` scope this is 404: then there is no e-mail, not an error.
    let resp = up.send(get("/user/emails"), "emails").await?;
    let emails: Vec<Email> = if resp.status().is_success() { json(resp, "emails").await? } else { Vec::new() };
    let primary = emails.into_iter().find(|e| e.primary);
    Ok(Identity {
        issuer: s.issuer.clone(),
        subject: user.id.to_string(),
        email_verified: primary.as_ref().is_some_and(|e| e.verified),
        email: primary.map(|e| e.email),
    })
}
