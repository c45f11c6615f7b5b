//! A third-party relying party, unchanged, against the real server: the `openidconnect` crate does
//! discovery, builds the authorization URL (code + PKCE + state + nonce), exchanges the code,
//! verifies the id_token (signature from the JWKS, issuer, audience, nonce, at_hash), calls
//! userinfo and refreshes. Only the browser step is ours: a signed-in cookie jar that follows the
//! authorization URL and allows on the consent page.

use crate::apps::{REDIRECT, add_app, authorize, web_login};
use crate::common::*;
use latchkey::keys::SigningAlg;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};

async fn sign_in_with(alg: SigningAlg, confidential: bool) {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let secret = add_app(&t, "rp", confidential, alg).await;
    web_login(&t, "ann@example.com").await;

    let http = openidconnect::reqwest::ClientBuilder::new().redirect(openidconnect::reqwest::redirect::Policy::none()).build().unwrap();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(t.base.clone()).unwrap(), &http).await.expect("discovery");
    let client = CoreClient::from_provider_metadata(meta, ClientId::new("rp".into()), secret.map(ClientSecret::new))
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let answer = authorize(&t, url.as_str()).await;
    assert_eq!(&answer["state"], state.secret(), "state round trip");
    assert_eq!(answer["iss"], t.base);

    let tokens = client
        .exchange_code(AuthorizationCode::new(answer["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an id_token");
    let expected_alg = match alg {
        SigningAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        SigningAlg::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
    };
    let id_verifier = client.id_token_verifier().set_allowed_algs(vec![expected_alg.clone()]);
    let claims = id_token.claims(&id_verifier, &nonce).expect("the id_token verifies");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ann@example.com"));
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(claims.subject().as_str(), user.id);
    let at_hash =
        AccessTokenHash::from_token(tokens.access_token(), id_token.signing_alg().unwrap(), id_token.signing_key(&id_verifier).unwrap())
            .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    // A wrong nonce is refused by the relying party.
    assert!(id_token.claims(&id_verifier, &Nonce::new("other".into())).is_err());

    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.expect("userinfo");
    assert_eq!(info.subject().as_str(), user.id);

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(refreshed.refresh_token().unwrap().secret(), tokens.refresh_token().unwrap().secret(), "rotated");
}

#[tokio::test]
async fn openidconnect_crate_signs_in_a_public_client_with_rs256() {
    sign_in_with(SigningAlg::RS256, false).await;
}

#[tokio::test]
async fn openidconnect_crate_signs_in_a_confidential_client_with_eddsa() {
    sign_in_with(SigningAlg::EdDSA, true).await;
}
