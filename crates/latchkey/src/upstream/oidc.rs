//! Any OpenID Connect issuer: discovery, the authorization code grant with PKCE, `state` and
//! `nonce`, the id_token's signature against the issuer's published keys and its claims
//! (`domain::id_token`), and userinfo for the e-mail when the id_token does not carry it.

use super::{Begin, Finish, Identity, Provider, Upstream, UpstreamError, UpstreamResult, json};
use crate::domain::id_token::{self, Claims, lenient_bool};
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::Mutex;

/// How long a discovery document is used before it is fetched again.
const METADATA_TTL_SECS: i64 = 3600;
/// After a failed fetch, sign-ins are answered "unavailable" (or served the last document, if
/// there is one) for this long before the issuer is asked again: an issuer that is down costs
/// one timeout per 30 s, not one per request.
const RETRY_AFTER_FAILURE_SECS: i64 = 30;
/// An id_token signed with a key we do not know makes us fetch the keys again (the issuer
/// rotated), but not more often than this: unknown `kid`s cannot make us hammer the issuer.
const JWKS_REFETCH_SECS: i64 = 10;

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

struct Discovered {
    meta: Metadata,
    fetched_at: i64,
    jwks: JwkSet,
    jwks_at: i64,
}

#[derive(Default)]
struct Known {
    discovered: Option<Discovered>,
    failed_at: Option<i64>,
}

/// One issuer's discovery document and keys. A tokio mutex: one fetch at a time per issuer.
#[derive(Default)]
pub struct Cache(Mutex<Known>);

impl Cache {
    /// Without waiting: a page rendering its CSP does not queue behind a fetch.
    pub fn authorization_endpoint(&self) -> Option<String> {
        self.0.try_lock().ok()?.discovered.as_ref().map(|d| d.meta.authorization_endpoint.clone())
    }

    pub async fn metadata(&self, up: &Upstream, now: i64) -> UpstreamResult<Metadata> {
        let mut known = self.0.lock().await;
        let fresh = known.discovered.as_ref().is_some_and(|d| now - d.fetched_at < METADATA_TTL_SECS);
        let resting = known.failed_at.is_some_and(|t| now - t < RETRY_AFTER_FAILURE_SECS);
        if fresh || resting {
            return match &known.discovered {
                Some(d) => Ok(d.meta.clone()),
                None => Err(UpstreamError::Unavailable(format!("{} could not be reached a moment ago", up.settings.display_name))),
            };
        }
        let fetched = async {
            let meta = discover(up).await?;
            let jwks = fetch_jwks(up, &meta.jwks_uri).await?;
            Ok::<_, UpstreamError>((meta, jwks))
        }
        .await;
        match fetched {
            Ok((meta, jwks)) => {
                known.discovered = Some(Discovered { meta: meta.clone(), fetched_at: now, jwks, jwks_at: now });
                known.failed_at = None;
                Ok(meta)
            }
            // A document that stopped verifying is not served stale; an issuer that is only
            // unreachable for a while is (its keys still verify its tokens).
            Err(UpstreamError::Unavailable(why)) if known.discovered.is_some() => {
                tracing::warn!(upstream = %up.settings.id, why, "discovery failed; using the last document");
                known.failed_at = Some(now);
                Ok(known.discovered.as_ref().map(|d| d.meta.clone()).unwrap_or_else(|| unreachable!()))
            }
            Err(e) => {
                known.failed_at = Some(now);
                if matches!(e, UpstreamError::Rejected(_)) {
                    known.discovered = None;
                }
                Err(e)
            }
        }
    }

    /// The keys, fetched again first when `kid` is not among them (and not fetched lately).
    async fn keys(&self, up: &Upstream, kid: Option<&str>, now: i64) -> UpstreamResult<JwkSet> {
        self.metadata(up, now).await?;
        let mut known = self.0.lock().await;
        let Some(d) = known.discovered.as_mut() else {
            return Err(UpstreamError::Unavailable("the provider's keys are not known".into()));
        };
        let known = kid.is_none_or(|k| d.jwks.find(k).is_some());
        if !known && now - d.jwks_at >= JWKS_REFETCH_SECS {
            d.jwks = fetch_jwks(up, &d.meta.jwks_uri).await?;
            d.jwks_at = now;
        }
        Ok(d.jwks.clone())
    }
}

async fn discover(up: &Upstream) -> UpstreamResult<Metadata> {
    let issuer = &up.settings.issuer;
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let resp = up.send(up.http.get(&url), "discovery").await?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!("discovery at {url} answered {}", resp.status())));
    }
    let meta: Metadata = json(resp, "discovery").await?;
    // OpenID Connect Discovery §4.3: the document must name exactly the issuer it was fetched
    // for, or a document elsewhere could make us trust another issuer's tokens.
    if meta.issuer != *issuer {
        return Err(UpstreamError::Rejected(format!("the discovery document names the issuer `{}`, not `{issuer}`", meta.issuer)));
    }
    // Plain http to this machine only for an issuer on this machine: a remote issuer's document
    // must not send our client secret to a port of ours.
    let local_issuer = !issuer.starts_with("https://");
    for (name, u) in
        [("authorization_endpoint", &meta.authorization_endpoint), ("token_endpoint", &meta.token_endpoint), ("jwks_uri", &meta.jwks_uri)]
            .into_iter()
            .chain(meta.userinfo_endpoint.as_ref().map(|u| ("userinfo_endpoint", u)))
    {
        if !crate::config::is_safe_url(u) || !(local_issuer || u.starts_with("https://")) {
            return Err(UpstreamError::Rejected(format!("the discovery document's {name} is not an https URL")));
        }
    }
    Ok(meta)
}

async fn fetch_jwks(up: &Upstream, uri: &str) -> UpstreamResult<JwkSet> {
    let resp = up.send(up.http.get(uri), "keys").await?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!("the provider's keys answered {}", resp.status())));
    }
    json(resp, "keys").await
}

/// An OpenID Connect issuer, with what it published.
#[derive(Default)]
pub struct Oidc {
    cache: Cache,
}

#[async_trait::async_trait]
impl Provider for Oidc {
    async fn authorization_url(&self, up: &Upstream, b: &Begin<'_>, now: i64) -> UpstreamResult<String> {
        authorization_url(&self.cache, up, b, now).await
    }

    async fn finish(&self, up: &Upstream, f: &Finish<'_>) -> UpstreamResult<Identity> {
        finish(&self.cache, up, f).await
    }

    fn authorization_endpoint(&self, _up: &Upstream) -> Option<String> {
        self.cache.authorization_endpoint()
    }

    async fn warm_up(&self, up: &Upstream, now: i64) -> UpstreamResult<()> {
        self.cache.metadata(up, now).await.map(|_| ())
    }
}

async fn authorization_url(cache: &Cache, up: &Upstream, b: &Begin<'_>, now: i64) -> UpstreamResult<String> {
    let meta = cache.metadata(up, now).await?;
    super::authorization_request(up, &meta.authorization_endpoint, b, &[("response_type", "code"), ("nonce", b.nonce)])
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    sub: String,
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    email_verified: Option<bool>,
}

async fn finish(cache: &Cache, up: &Upstream, f: &Finish<'_>) -> UpstreamResult<Identity> {
    let meta = cache.metadata(up, f.now).await?;
    if meta.authorization_response_iss_parameter_supported && f.iss.is_none() {
        return Err(UpstreamError::Rejected("the answer carries no issuer (iss), which this provider always sends".into()));
    }
    let tokens = exchange(up, &meta, f).await?;
    let id_token = tokens.id_token.ok_or_else(|| UpstreamError::Rejected("the provider sent no id_token".into()))?;
    let claims = verify_id_token(cache, up, &meta, &id_token, f.nonce, f.now).await?;
    let (mut email, mut verified) = (claims.email.clone(), claims.email_verified);
    // Many issuers put the e-mail only in userinfo (Core §5.4); it must be about the same subject.
    if email.is_none()
        && up.settings.scopes.iter().any(|s| s == "email")
        && let (Some(endpoint), Some(access_token)) = (&meta.userinfo_endpoint, &tokens.access_token)
    {
        let resp = up.send(up.http.get(endpoint).bearer_auth(access_token), "userinfo").await?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Unavailable(format!("userinfo answered {}", resp.status())));
        }
        let info: UserInfo = json(resp, "userinfo").await?;
        if info.sub != claims.sub {
            return Err(UpstreamError::Rejected("userinfo is about another subject than the id_token".into()));
        }
        (email, verified) = (info.email, info.email_verified);
    }
    Ok(Identity { issuer: meta.issuer, subject: claims.sub, email, email_verified: verified == Some(true) })
}

async fn exchange(up: &Upstream, meta: &Metadata, f: &Finish<'_>) -> UpstreamResult<TokenResponse> {
    let s = &up.settings;
    let mut form =
        vec![("grant_type", "authorization_code"), ("code", f.code), ("redirect_uri", f.redirect_uri), ("code_verifier", f.code_verifier)];
    let mut req = up.http.post(&meta.token_endpoint).header(reqwest::header::ACCEPT, "application/json");
    let methods = meta.token_endpoint_auth_methods_supported.as_deref();
    let supports = |m: &str| methods.is_none_or(|ms| ms.iter().any(|x| x == m));
    if s.client_secret.is_empty() {
        form.push(("client_id", &s.client_id));
    } else if supports("client_secret_basic") {
        // RFC 6749 §2.3.1: both halves form-encoded before Base64.
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let basic = crate::domain::secret::b64std(format!("{}:{}", enc(&s.client_id), enc(&s.client_secret)).as_bytes());
        req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
    } else if supports("client_secret_post") {
        form.push(("client_id", &s.client_id));
        form.push(("client_secret", &s.client_secret));
    } else {
        return Err(UpstreamError::Rejected("the provider takes no client authentication this server can do".into()));
    }
    let resp = up.send(req.form(&form), "token").await?;
    let status = resp.status();
    let body: TokenResponse = json(resp, "token").await?;
    if let Some(error) = body.error.as_deref().or((!status.is_success()).then_some("")) {
        let detail = body.error_description.as_deref().unwrap_or("");
        tracing::info!(upstream = %s.id, %status, error, detail, "upstream refused the code");
        return Err(UpstreamError::Rejected(format!("the provider refused the sign-in's code ({error})")));
    }
    Ok(body)
}

async fn verify_id_token(cache: &Cache, up: &Upstream, meta: &Metadata, token: &str, nonce: &str, now: i64) -> UpstreamResult<Claims> {
    let rejected = |why: String| UpstreamError::Rejected(why);
    // `alg: none` has no `Algorithm`, so the header does not even parse.
    let header = decode_header(token).map_err(|e| rejected(format!("the id_token cannot be read ({e})")))?;
    let alg = header.alg;
    let alg_name = format!("{alg:?}");
    // HS*: a key derived from the client secret, which we do not accept in place of the issuer's keys.
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(rejected(format!("the id_token is signed with a shared secret ({alg_name})")));
    }
    let advertised = &meta.id_token_signing_alg_values_supported;
    if !advertised.is_empty() && !advertised.contains(&alg_name) {
        return Err(rejected(format!("the id_token is signed with {alg_name}, which the provider does not advertise")));
    }
    let jwks = cache.keys(up, header.kid.as_deref(), now).await?;
    let candidates: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter(|k| k.common.key_algorithm.is_none_or(|a| a.to_string() == alg_name))
        .collect();
    let [jwk] = candidates.as_slice() else {
        return Err(rejected("the id_token is signed with a key the provider does not publish".into()));
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| rejected(format!("the provider's key cannot be used ({e})")))?;
    // Signature and algorithm here; every claim, against our clock, in `domain::id_token`.
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = decode::<Claims>(token, &key, &v).map_err(|e| rejected(format!("the id_token's signature does not verify ({e})")))?.claims;
    id_token::check(&claims, &id_token::Expected { issuer: &meta.issuer, client_id: &up.settings.client_id, nonce, now })
        .map_err(|e| rejected(e.to_string()))?;
    Ok(claims)
}
