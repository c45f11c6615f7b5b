//! Upstream sign-ins and identities on each backend: a state is taken once under a race and
//! never after it expired; an identity is linked once; removing identities at once never leaves
//! an account with no way in.

use super::*;
use latchkey::store::{IdentityRow, Unlinked, UpstreamStateRow};

fn state(hash: &[u8], expires_at: i64) -> UpstreamStateRow {
    UpstreamStateRow {
        state_hash: hash.to_vec(),
        browser_hash: b"browser".to_vec(),
        upstream: "corp".into(),
        next: "/account".into(),
        link_session_id: None,
        created_at: NOW,
        expires_at,
    }
}

fn identity(id: &str, user_id: &str, subject: &str) -> IdentityRow {
    IdentityRow {
        id: id.into(),
        user_id: user_id.into(),
        upstream: "corp".into(),
        issuer: "https://sso.example".into(),
        subject: subject.into(),
        email: None,
        created_at: NOW,
        last_used_at: NOW,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_state_is_taken_once() {
    each_backend("an_upstream_state_is_taken_once", |store| async move {
        store.create_upstream_state(&state(b"s1", NOW + 600)).await.unwrap();
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.take_upstream_state(b"s1", NOW + 1).await.unwrap().is_some() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        // Expired: never taken.
        store.create_upstream_state(&state(b"s2", NOW + 600)).await.unwrap();
        assert!(store.take_upstream_state(b"s2", NOW + 600).await.unwrap().is_none());
        let taken = store.take_upstream_state(b"s2", NOW + 599).await.unwrap().expect("live until then");
        assert_eq!((taken.upstream.as_str(), taken.next.as_str()), ("corp", "/account"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_is_linked_to_one_account() {
    each_backend("an_identity_is_linked_to_one_account", |store| async move {
        user(&store, "a").await;
        user(&store, "b").await;
        let answers = race(RACERS, |i| {
            let store = store.clone();
            async move {
                let owner = if i % 2 == 0 { "a" } else { "b" };
                store.link_identity(&identity(&format!("i{i}"), owner, "sub-1")).await.is_ok()
            }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        // A new account and its identity come together, or not at all.
        let dup = UserRow { id: "c".into(), email: None, password_hash: None, created_at: NOW, email_verified_at: None };
        assert!(matches!(store.create_user_with_identity(&dup, &identity("ic", "c", "sub-1")).await, Err(StoreError::Conflict)));
        assert!(store.user_by_id("c").await.unwrap().is_none(), "no account without its identity");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removals_at_once_never_leave_an_account_without_a_way_in() {
    each_backend("removals_at_once_never_leave_an_account_without_a_way_in", |store| async move {
        let u = UserRow { id: "p".into(), email: None, password_hash: None, created_at: NOW, email_verified_at: None };
        store.create_user_with_identity(&u, &identity("first", "p", "s0")).await.unwrap();
        for i in 1..RACERS {
            store.link_identity(&identity(&format!("id{i}"), "p", &format!("s{i}"))).await.unwrap();
        }
        let answers = race(RACERS, |i| {
            let store = store.clone();
            async move {
                let id = if i == 0 { "first".to_owned() } else { format!("id{i}") };
                store.unlink_identity("p", &id).await.unwrap()
            }
        })
        .await;
        assert_eq!(answers.iter().filter(|a| **a == Unlinked::Removed).count(), RACERS - 1, "{answers:?}");
        assert_eq!(answers.iter().filter(|a| **a == Unlinked::LastWayIn).count(), 1);
        assert_eq!(store.identities_for_user("p").await.unwrap().len(), 1);
        assert_eq!(store.unlink_identity("p", "nosuch").await.unwrap(), Unlinked::NotFound);
        assert_eq!(store.unlink_identity("someone-else", "first").await.unwrap(), Unlinked::NotFound);
    })
    .await;
}
