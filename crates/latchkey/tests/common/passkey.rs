//! A software passkey for the tests: 1Password's WebAuthn client and CTAP2 authenticator
//! (passkey-client, passkey-authenticator), speaking to a real server through the JSON the
//! server hands to `navigator.credentials` and takes back. Nothing here is hand-made WebAuthn.

use passkey_authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey_client::{Client, DefaultClientData};
use passkey_crypto::aws_lc_rs::AwsLcRsBackend;
use passkey_types::Passkey;
use passkey_types::ctap2::{Aaguid, Ctap2Error};
use passkey_types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use serde_json::Value;
use url::Url;

/// The person at the authenticator: always present; verified (PIN, biometric) unless told not.
pub struct Person {
    pub verifies: bool,
}

#[async_trait::async_trait]
impl UserValidationMethod for Person {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(&self, _hint: UiHint<'a, Passkey>, _presence: bool, verification: bool) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence: true, verification: verification && self.verifies })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type SoftClient = Client<Option<Passkey>, Person, AwsLcRsBackend, public_suffix::PublicSuffixList, ()>;

/// One authenticator holding one discoverable credential (passkey-authenticator's `Option<Passkey>`
/// store), at one origin.
pub struct SoftKey {
    client: SoftClient,
    pub origin: Url,
}

impl SoftKey {
    pub fn new(origin: &str) -> Self {
        Self::with_person(origin, Person { verifies: true })
    }

    pub fn with_person(origin: &str, person: Person) -> Self {
        let mut authenticator = Authenticator::new(Aaguid::new_empty(), None, person, AwsLcRsBackend);
        authenticator.set_make_credentials_with_signature_counter(true);
        Self { client: Client::new(authenticator).allows_insecure_localhost(true), origin: Url::parse(origin).expect("origin") }
    }

    /// Answers the server's `options` (`{"publicKey": …}`) for `navigator.credentials.create()`.
    pub async fn register(&mut self, options: &Value) -> Value {
        self.try_register(options).await.expect("the authenticator makes a credential")
    }

    /// As `register`, or what the client or authenticator refused (no answer reaches the server).
    pub async fn try_register(&mut self, options: &Value) -> Result<Value, String> {
        let request: CredentialCreationOptions = serde_json::from_value(options.clone()).map_err(|e| format!("creation options: {e}"))?;
        let created = self.client.register(&self.origin, request, DefaultClientData).await.map_err(|e| format!("{e:?}"))?;
        Ok(serde_json::to_value(created).unwrap())
    }

    /// Answers the server's `options` for `navigator.credentials.get()`.
    pub async fn sign(&mut self, options: &Value) -> Value {
        self.try_sign(options).await.expect("the authenticator signs")
    }

    pub async fn try_sign(&mut self, options: &Value) -> Result<Value, String> {
        let mut options = options.clone();
        // `mediation` is the page's business (autofill or a button), not the authenticator's.
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        // An empty allow-list means "any credential of this site" (WebAuthn §5.5): as absent.
        if options["publicKey"]["allowCredentials"].as_array().is_some_and(Vec::is_empty)
            && let Some(pk) = options["publicKey"].as_object_mut()
        {
            pk.remove("allowCredentials");
        }
        let request: CredentialRequestOptions = serde_json::from_value(options).map_err(|e| format!("request options: {e}"))?;
        let signed = self.client.authenticate(&self.origin, request, DefaultClientData).await.map_err(|e| format!("{e:?}"))?;
        Ok(serde_json::to_value(signed).unwrap())
    }

    /// The credentials as they are now: restoring them later is a cloned authenticator whose
    /// signature counter went backwards.
    pub fn snapshot(&self) -> Option<Passkey> {
        self.client.authenticator().store().clone()
    }

    pub fn restore(&mut self, store: Option<Passkey>) {
        *self.client.authenticator_mut().store_mut() = store;
    }
}
