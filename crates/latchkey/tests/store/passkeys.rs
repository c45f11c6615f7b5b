//! Passkeys on each backend: a ceremony is taken once, for its purpose, and never after it
//! expired; a credential is registered to one account; assertions of one counter value race to
//! one winner and a counter never goes back; removals at once keep a way in, passkeys and
//! identities counted together.

use super::*;
use latchkey::store::{IdentityRow, PasskeyChallengeRow, PasskeyRow, Unlinked};

fn challenge(hash: &[u8], purpose: &str, expires_at: i64) -> PasskeyChallengeRow {
    PasskeyChallengeRow {
        handle_hash: hash.to_vec(),
        purpose: purpose.into(),
        user_id: None,
        session_id: None,
        name: None,
        state: "{}".into(),
        created_at: NOW,
        expires_at,
    }
}

fn passkey(id: &str, user_id: &str, credential_id: &[u8]) -> PasskeyRow {
    PasskeyRow {
        id: id.into(),
        user_id: user_id.into(),
        credential_id: credential_id.to_vec(),
        name: id.into(),
        credential: "{}".into(),
        counter: 0,
        backup_eligible: true,
        backed_up: false,
        created_at: NOW,
        last_used_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ceremony_is_taken_once_for_its_purpose() {
    each_backend("a_ceremony_is_taken_once_for_its_purpose", |store| async move {
        store.create_passkey_challenge(&challenge(b"c1", "sign_in", NOW + 300)).await.unwrap();
        assert!(store.take_passkey_challenge(b"c1", "step_up", NOW + 1).await.unwrap().is_none(), "not for another purpose");
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.take_passkey_challenge(b"c1", "sign_in", NOW + 1).await.unwrap().is_some() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        store.create_passkey_challenge(&challenge(b"c2", "register", NOW + 300)).await.unwrap();
        assert!(store.take_passkey_challenge(b"c2", "register", NOW + 300).await.unwrap().is_none(), "expired");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_belongs_to_one_account_and_its_counter_only_moves_forward() {
    each_backend("a_credential_belongs_to_one_account_and_its_counter_only_moves_forward", |store| async move {
        user(&store, "a").await;
        user(&store, "b").await;
        let answers = race(RACERS, |i| {
            let store = store.clone();
            async move { store.add_passkey(&passkey(&format!("p{i}"), if i % 2 == 0 { "a" } else { "b" }, b"cred")).await.is_ok() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        let row = store.passkey_by_credential(b"cred").await.unwrap().expect("registered");
        // Many assertions presenting counter 5 at once (a cloned authenticator): one is taken.
        let answers = race(RACERS, |_| {
            let (store, id) = (store.clone(), row.id.clone());
            async move { store.use_passkey(&id, "{\"n\":5}", 5, true, NOW + 1).await.unwrap() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        assert!(!store.use_passkey(&row.id, "{}", 4, true, NOW + 2).await.unwrap(), "backwards");
        assert!(store.use_passkey(&row.id, "{}", 6, false, NOW + 3).await.unwrap());
        let now = store.passkey_by_credential(b"cred").await.unwrap().unwrap();
        assert_eq!((now.counter, now.backed_up, now.last_used_at), (6, false, Some(NOW + 3)));
        // An authenticator without a counter (0 then and now) is not a clone.
        store.add_passkey(&passkey("zero", "a", b"zero")).await.unwrap();
        assert!(store.use_passkey("zero", "{}", 0, false, NOW).await.unwrap());
        assert!(store.use_passkey("zero", "{}", 0, false, NOW).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_passkeys_at_once_keeps_a_way_in() {
    each_backend("removing_passkeys_at_once_keeps_a_way_in", |store| async move {
        let u = UserRow { id: "p".into(), email: None, password_hash: None, created_at: NOW, email_verified_at: None };
        store.create_user(&u).await.unwrap();
        for i in 0..RACERS {
            store.add_passkey(&passkey(&format!("k{i}"), "p", format!("c{i}").as_bytes())).await.unwrap();
        }
        let answers = race(RACERS, |i| {
            let store = store.clone();
            async move { store.remove_passkey("p", &format!("k{i}")).await.unwrap() }
        })
        .await;
        assert_eq!(answers.iter().filter(|a| **a == Unlinked::Removed).count(), RACERS - 1, "{answers:?}");
        assert_eq!(store.passkeys_for_user("p").await.unwrap().len(), 1);
        assert_eq!(store.remove_passkey("someone-else", "k0").await.unwrap(), Unlinked::NotFound);
        // A linked identity is a way in too: now the last passkey may go, and then the identity may not.
        let identity = IdentityRow {
            id: "i".into(),
            user_id: "p".into(),
            upstream: "corp".into(),
            issuer: "https://sso.example".into(),
            subject: "s".into(),
            email: None,
            created_at: NOW,
            last_used_at: NOW,
        };
        store.link_identity(&identity).await.unwrap();
        let last = store.passkeys_for_user("p").await.unwrap().remove(0);
        assert_eq!(store.unlink_identity("p", "i").await.unwrap(), Unlinked::Removed, "a passkey is left");
        store.link_identity(&identity).await.unwrap();
        assert_eq!(store.remove_passkey("p", &last.id).await.unwrap(), Unlinked::Removed);
        assert_eq!(store.unlink_identity("p", "i").await.unwrap(), Unlinked::LastWayIn);
    })
    .await;
}
