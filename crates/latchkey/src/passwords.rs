//! Password hashing on a bounded pool: argon2id with the user's id bound in as the argon2
//! secret (seed 003: a hash copied onto another user's row does not verify). At most
//! `workers` hashes run at once on blocking threads; at most `queue` more wait; anything past
//! that is refused at once as overload, so a login flood is answered quickly instead of queued.
//! Each blocking thread keeps its argon2 memory (19 MiB by default) between hashes instead of
//! allocating and faulting it in afresh every time.

use crate::config::PasswordSettings;
use crate::domain::{Password, secret};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// A place in the hashing queue, taken before any other work on a request that will hash.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit); // held, never read: dropping it frees the place

pub struct PasswordHasher {
    params: Params,
    run: Arc<Semaphore>,
    admit: Arc<Semaphore>,
    dummy: String,
}

const DUMMY_USER: &[u8] = b"latchkey-dummy-user";

thread_local! {
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn internal(e: impl std::fmt::Display) -> HashError {
    HashError::Internal(e.to_string())
}

/// Runs argon2id into `out` with this thread's reusable memory.
fn argon2_into(secret: &[u8], params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), HashError> {
    let argon = Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params.clone()).map_err(internal)?;
    MEMORY.with(|m| {
        let mut blocks = m.borrow_mut();
        let need = params.block_count();
        if blocks.len() != need {
            *blocks = vec![Block::default(); need];
        }
        argon.hash_password_into_with_memory(password, salt, out, blocks.as_mut_slice()).map_err(internal)
    })
}

fn hash_blocking(secret: &[u8], params: &Params, password: &str) -> Result<String, HashError> {
    let salt = secret::random_bytes::<16>();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(secret, params, password.as_bytes(), &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(internal)?,
        salt: Some(Salt::new(&salt).map_err(internal)?),
        hash: Some(Output::new(&out).map_err(internal)?),
    };
    Ok(phc.to_string())
}

/// Recomputes the hash with the parameters and salt stored in `phc` and compares in constant time.
fn verify_blocking(secret: &[u8], password: &str, phc: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(phc).map_err(internal)?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(HashError::Internal(format!("unexpected password hash algorithm {}", parsed.algorithm)));
    }
    let params = Params::try_from(&parsed).map_err(internal)?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(HashError::Internal("password hash without salt or output".into()));
    };
    let mut out = vec![0u8; expected.len()];
    argon2_into(secret, &params, password.as_bytes(), salt.as_ref(), &mut out)?;
    Ok(secret::ct_eq(&out, expected.as_bytes()))
}

impl PasswordHasher {
    pub fn new(s: &PasswordSettings) -> anyhow::Result<Self> {
        let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let workers = if s.hash_workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { s.hash_workers };
        let dummy = hash_blocking(DUMMY_USER, &params, "latchkey dummy password").map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { params, run: Arc::new(Semaphore::new(workers)), admit: Arc::new(Semaphore::new(workers + s.hash_queue)), dummy })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Takes a place in the queue, or refuses at once when it is full.
    pub fn reserve(&self) -> Result<Slot, HashError> {
        self.admit.clone().try_acquire_owned().map(Slot).map_err(|_| HashError::Overloaded)
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        slot: Slot,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let running = self.run.clone().acquire_owned().await.map_err(internal)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let out = job();
            drop((running, slot));
            out
        })
        .await
        .map_err(internal)?
    }

    pub async fn hash(&self, user_id: &str, password: &Password) -> Result<String, HashError> {
        let slot = self.reserve()?;
        let (uid, pw, params) = (user_id.as_bytes().to_vec(), password.expose().to_owned(), self.params.clone());
        self.on_pool(slot, move || hash_blocking(&uid, &params, &pw)).await
    }

    /// Checks `password` for `user_id` against `phc`; with no hash (unknown user, or an account
    /// without a password) it checks a dummy hash instead so that timing tells nothing.
    pub async fn verify(&self, slot: Slot, user_id: Option<&str>, password: &Password, phc: Option<&str>) -> Result<bool, HashError> {
        let pw = password.expose().to_owned();
        match (user_id, phc) {
            (Some(uid), Some(phc)) => {
                let (uid, phc) = (uid.as_bytes().to_vec(), phc.to_owned());
                self.on_pool(slot, move || verify_blocking(&uid, &pw, &phc)).await
            }
            _ => {
                let dummy = self.dummy.clone();
                self.on_pool(slot, move || verify_blocking(DUMMY_USER, &pw, &dummy).map(|_| false)).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(queue: usize) -> PasswordHasher {
        let s = PasswordSettings { memory_kib: 8192, iterations: 1, parallelism: 1, hash_workers: 1, hash_queue: queue };
        PasswordHasher::new(&s).unwrap()
    }

    #[tokio::test]
    async fn hash_is_bound_to_user() {
        let h = hasher(4);
        let pw = Password::parse("correct horse".into()).unwrap();
        let phc = h.hash("user-a", &pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(h.verify(h.reserve().unwrap(), Some("user-a"), &pw, Some(&phc)).await.unwrap());
        assert!(!h.verify(h.reserve().unwrap(), Some("user-b"), &pw, Some(&phc)).await.unwrap(), "hash moved to another user must fail");
        let wrong = Password::for_login("wrong horse".into()).unwrap();
        assert!(!h.verify(h.reserve().unwrap(), Some("user-a"), &wrong, Some(&phc)).await.unwrap());
        assert!(!h.verify(h.reserve().unwrap(), None, &pw, None).await.unwrap());
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::PasswordVerifier;
        let params = Params::new(8192, 1, 1, None).unwrap();
        let phc = hash_blocking(b"uid", &params, "pw-123456").unwrap();
        let argon = Argon2::new_with_secret(b"uid", Algorithm::Argon2id, Version::V0x13, params).unwrap();
        assert!(argon.verify_password(b"pw-123456", phc.as_str()).is_ok(), "a standard verifier accepts our hashes");
        assert!(verify_blocking(b"uid", "pw-123456", &phc).unwrap());
        assert!(!verify_blocking(b"uid", "pw-1234567", &phc).unwrap());
        assert!(verify_blocking(b"uid", "x", "not a hash").is_err());
    }

    #[tokio::test]
    async fn overload_is_refused_not_queued() {
        let h = hasher(0);
        let held = h.reserve().unwrap();
        assert!(matches!(h.reserve(), Err(HashError::Overloaded)), "one worker, no queue: the second is refused at once");
        drop(held);
        assert!(h.reserve().is_ok());
    }
}
