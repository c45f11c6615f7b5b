//! Password hashing on a bounded pool: argon2id with the user's id bound in as the argon2
//! secret (seed 003: a hash copied onto another user's row does not verify). At most
//! `workers` hashes run at once on blocking threads; at most `queue` more wait; anything past
//! that is refused at once as overload, so a login flood is answered quickly instead of queued.

use crate::config::PasswordSettings;
use crate::domain::Password;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

pub struct PasswordHasher {
    params: Params,
    run: Arc<Semaphore>,
    admit: Arc<Semaphore>,
    dummy: String,
}

const DUMMY_USER: &[u8] = b"latchkey-dummy-user";

fn argon(secret: &[u8], params: Params) -> Result<Argon2<'_>, HashError> {
    Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params).map_err(|e| HashError::Internal(e.to_string()))
}

fn hash_blocking(secret: &[u8], params: Params, password: &str) -> Result<String, HashError> {
    argon(secret, params)?.hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| HashError::Internal(e.to_string()))
}

fn verify_blocking(secret: &[u8], params: Params, password: &str, phc: &str) -> Result<bool, HashError> {
    match argon(secret, params)?.verify_password(password.as_bytes(), phc) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(HashError::Internal(e.to_string())),
    }
}

impl PasswordHasher {
    pub fn new(s: &PasswordSettings) -> anyhow::Result<Self> {
        let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let workers = if s.hash_workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { s.hash_workers };
        let dummy = hash_blocking(DUMMY_USER, params.clone(), "latchkey dummy password").map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { params, run: Arc::new(Semaphore::new(workers)), admit: Arc::new(Semaphore::new(workers + s.hash_queue)), dummy })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    async fn on_pool<T: Send + 'static>(&self, job: impl FnOnce() -> Result<T, HashError> + Send + 'static) -> Result<T, HashError> {
        let admitted = self.admit.clone().try_acquire_owned().map_err(|_| HashError::Overloaded)?;
        let running = self.run.clone().acquire_owned().await.map_err(|e| HashError::Internal(e.to_string()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let out = job();
            drop((running, admitted));
            out
        })
        .await
        .map_err(|e| HashError::Internal(e.to_string()))?
    }

    pub async fn hash(&self, user_id: &str, password: &Password) -> Result<String, HashError> {
        let (uid, pw, params) = (user_id.as_bytes().to_vec(), password.expose().to_owned(), self.params.clone());
        self.on_pool(move || hash_blocking(&uid, params, &pw)).await
    }

    /// Checks `password` for `user_id` against `phc`; with no hash (unknown user, or an account
    /// without a password) it checks a dummy hash instead so that timing tells nothing.
    pub async fn verify(&self, user_id: Option<&str>, password: &Password, phc: Option<&str>) -> Result<bool, HashError> {
        let pw = password.expose().to_owned();
        let params = self.params.clone();
        match (user_id, phc) {
            (Some(uid), Some(phc)) => {
                let (uid, phc) = (uid.as_bytes().to_vec(), phc.to_owned());
                self.on_pool(move || verify_blocking(&uid, params, &pw, &phc)).await
            }
            _ => {
                let dummy = self.dummy.clone();
                self.on_pool(move || verify_blocking(DUMMY_USER, params, &pw, &dummy).map(|_| false)).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        let s = PasswordSettings { memory_kib: 8192, iterations: 1, parallelism: 1, hash_workers: 1, hash_queue: 0 };
        PasswordHasher::new(&s).unwrap()
    }

    #[tokio::test]
    async fn hash_is_bound_to_user() {
        let h = hasher();
        let pw = Password::parse("correct horse".into()).unwrap();
        let phc = h.hash("user-a", &pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(h.verify(Some("user-a"), &pw, Some(&phc)).await.unwrap());
        assert!(!h.verify(Some("user-b"), &pw, Some(&phc)).await.unwrap(), "hash moved to another user must fail");
        let wrong = Password::for_login("wrong horse".into()).unwrap();
        assert!(!h.verify(Some("user-a"), &wrong, Some(&phc)).await.unwrap());
        assert!(!h.verify(None, &pw, None).await.unwrap());
    }

    #[tokio::test]
    async fn overload_is_refused_not_queued() {
        let h = Arc::new(hasher());
        let pw = Password::parse("correct horse".into()).unwrap();
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (h, pw) = (h.clone(), pw.clone());
                tokio::spawn(async move { h.hash("u", &pw).await })
            })
            .collect();
        let mut overloaded = 0;
        for j in jobs {
            if matches!(j.await.unwrap(), Err(HashError::Overloaded)) {
                overloaded += 1;
            }
        }
        assert!(overloaded >= 1, "one worker and no queue must refuse some of 6 concurrent hashes");
    }
}
