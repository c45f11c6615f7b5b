//! The approval state machine at the store: each backend's conditional writes agree with the
//! pure transition function (`domain::approval::transition`) over random runs, and every
//! single-use step of it has exactly one winner under concurrency.

use super::*;
use latchkey::domain::approval::{self, Flow, Status, Transition};
use latchkey::domain::secret::token_hash;
use latchkey::store::{ApprovalRow, CollectBy, Collected, Created, DecideBy, Decision, PairingCodeRow, Redeemed};
use proptest::prelude::*;

const IP: &str = "192.0.2.7";

/// A user with one signed-in device (the approver).
async fn approver(store: &DynStore, n: &str) -> (String, String) {
    let (d, _, _) = signed_in(store, n).await;
    (n.to_owned(), d.id)
}

/// The rows a collection creates for the new device `n`.
fn new_device(user: &str, n: &str) -> (DeviceRow, SessionRow, RefreshTokenRow) {
    let s = session(user, n, &format!("{n}-s"), NOW + 1000);
    let r = refresh(&s.id, format!("{n}-r").as_bytes(), NOW + 500);
    (device(user, n), s, r)
}

async fn collect(store: &DynStore, by: CollectBy<'_>, user: &str, n: &str, now: i64) -> Collected {
    let (d, s, r) = new_device(user, n);
    store.collect_approval(&by, &d, &s, Some(&r), now).await.unwrap()
}

fn pending(flow: Flow, id: &str, expires_at: i64) -> ApprovalRow {
    ApprovalRow {
        id: id.into(),
        flow,
        device_code_hash: token_hash(id),
        user_code_hmac: (flow == Flow::DeviceCode).then(|| token_hash(&format!("uc-{id}")).to_vec()),
        client_id: if flow == Flow::Qr { "latchkey-web".into() } else { "latchkey-cli".into() },
        scope: "openid".into(),
        status: Status::Pending,
        created_at: 0,
        expires_at,
        requester_ip: IP.into(),
        requester_ua: "ua".into(),
        requester_kind: Some("desktop".into()),
        poll_interval: 5,
        match_code: (flow == Flow::Qr).then(|| "42".into()),
        ..Default::default()
    }
}

fn audit_row() -> AuditRow {
    AuditRow { id: 0, at: 0, kind: "test".into(), user_id: None, device_id: None, ip: None, user_agent: None, detail: "{}".into() }
}

/// Opens a pairing request bound to the approver's device, as redeeming its code does.
async fn open_pairing(store: &DynStore, user: &str, device: &str, id: &str, expires_at: i64) {
    let hmac = token_hash(&format!("pc-{id}")).to_vec();
    let code = PairingCodeRow {
        id: format!("pc-{id}"),
        user_id: user.into(),
        issuer_device_id: device.into(),
        code_hmac: hmac.clone(),
        scope: "openid".into(),
        created_at: 0,
        expires_at,
        redeemed_at: None,
        approval_id: None,
    };
    store.create_pairing_code(&code, 0).await.unwrap();
    let opened = store.redeem_pairing_code(&hmac, &pending(Flow::Pairing, id, expires_at), 0, 0, &audit_row()).await.unwrap();
    assert!(matches!(opened, Redeemed::Opened(_)), "{opened:?}");
}

/// One step of a random run against both the store and the model.
#[derive(Debug, Clone, Copy)]
enum Step {
    Approve,
    Deny,
    Collect,
    Revoke,
    Wait(i64),
}

fn any_step() -> impl Strategy<Value = Step> {
    // Waiting weighs most, so that many runs reach the expiry with the request still open.
    prop_oneof![
        1 => Just(Step::Approve),
        1 => Just(Step::Deny),
        1 => Just(Step::Collect),
        1 => Just(Step::Revoke),
        4 => (1i64..25).prop_map(Step::Wait),
    ]
}

/// Runs `steps` on a pairing request (bound to its approver from the start, so every
/// transition applies) and checks after each step that the store did what the pure machine says.
async fn transitions_agree_with_the_domain(store: DynStore, runs: Vec<Vec<Step>>) {
    let (user, device) = approver(&store, "model").await;
    for (r, steps) in runs.into_iter().enumerate() {
        let id = format!("run-{r}");
        // Short enough that most runs outlive it: steps after the expiry are the point.
        let expires_at = 40;
        open_pairing(&store, &user, &device, &id, expires_at).await;
        let (mut now, mut status) = (0i64, Status::Pending);
        for (i, step) in steps.iter().enumerate() {
            let t = match step {
                Step::Wait(dt) => {
                    now += dt;
                    continue;
                }
                Step::Approve => Transition::Approve,
                Step::Deny => Transition::Deny,
                Step::Collect => Transition::Collect,
                Step::Revoke => Transition::Revoke,
            };
            let expected = approval::transition(status, expires_at, now, t);
            let happened = match t {
                Transition::Approve | Transition::Deny => {
                    let d = Decision {
                        by: DecideBy::Pairing { approval_id: &id },
                        approve: t == Transition::Approve,
                        user_id: &user,
                        device_id: &device,
                        requester_name: None,
                        handoff: None,
                        passkey_verified: false,
                    };
                    store.decide_approval(&d, now).await.unwrap().is_some()
                }
                Transition::Collect => collect(&store, CollectBy::Id(&id), &user, &format!("new-{r}-{i}"), now).await == Collected::Yes,
                Transition::Revoke => {
                    // Only this request is bound to the device in this run: the others have ended.
                    store.end_approvals_of_device(&user, &device, now).await.unwrap() == 1
                }
            };
            assert_eq!(
                happened,
                expected.is_ok(),
                "run {r} step {i} {step:?} at {now} from {status:?}: store {happened}, model {expected:?}"
            );
            if let Ok(next) = expected {
                status = next;
            }
            let stored = store.approval(&id).await.unwrap().unwrap();
            assert_eq!(stored.status, status, "run {r} step {i}");
            assert_eq!(stored.expires_at, expires_at, "expiry is never moved");
        }
        // End the run's request so the next run's revocations see only their own.
        store.end_approvals_of_device(&user, &device, now.min(expires_at - 1)).await.unwrap();
    }
}

/// Random runs for `transitions_agree_with_the_domain`, drawn once (the store part is async).
fn random_runs() -> Vec<Vec<Step>> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let runs = prop::collection::vec(prop::collection::vec(any_step(), 0..16), 64);
    runs.new_tree(&mut runner).unwrap().current()
}

/// Many devices race to decide one request (half approve, half deny): one decision wins, and
/// the request ends in that state.
async fn one_decision_wins_on(store: DynStore) {
    let (user, device) = approver(&store, "race").await;
    store.create_approval(&pending(Flow::DeviceCode, "dg", 100), 0, 0, None).await.unwrap();
    let hmac = pending(Flow::DeviceCode, "dg", 100).user_code_hmac.unwrap();
    let decided = race(RACERS, |i| {
        let (store, user, device, hmac) = (store.clone(), user.clone(), device.clone(), hmac.clone());
        async move {
            let d = Decision {
                by: DecideBy::UserCode(&hmac),
                approve: i % 2 == 0,
                user_id: &user,
                device_id: &device,
                requester_name: None,
                handoff: None,
                passkey_verified: false,
            };
            store.decide_approval(&d, 1).await.unwrap().map(|a| a.status)
        }
    })
    .await;
    let won: Vec<Status> = decided.into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(store.approval("dg").await.unwrap().unwrap().status, won[0]);
}

/// Many polls race to collect one approved request: one session.
async fn one_collection_wins_on(store: DynStore) {
    let (user, device) = approver(&store, "collect").await;
    open_pairing(&store, &user, &device, "pc", 100).await;
    let d = Decision {
        by: DecideBy::Pairing { approval_id: "pc" },
        approve: true,
        user_id: &user,
        device_id: &device,
        requester_name: None,
        handoff: None,
        passkey_verified: false,
    };
    store.decide_approval(&d, 1).await.unwrap().unwrap();
    let wins = race(RACERS, |i| {
        let (store, user) = (store.clone(), user.clone());
        async move { collect(&store, CollectBy::Id("pc"), &user, &format!("nd{i}"), 2).await == Collected::Yes }
    })
    .await;
    assert_eq!(winners(&wins), 1);
    assert_eq!(store.approval("pc").await.unwrap().unwrap().status, Status::Collected);
}

/// Many requesters race to redeem one pairing code: one request opens.
async fn one_redemption_wins_on(store: DynStore) {
    let (user, device) = approver(&store, "redeem").await;
    let hmac = b"the one code".to_vec();
    let code = PairingCodeRow {
        id: "code".into(),
        user_id: user.clone(),
        issuer_device_id: device.clone(),
        code_hmac: hmac.clone(),
        scope: "openid".into(),
        created_at: 0,
        expires_at: 100,
        redeemed_at: None,
        approval_id: None,
    };
    store.create_pairing_code(&code, 0).await.unwrap();
    let wins = race(RACERS, |i| {
        let (store, hmac) = (store.clone(), hmac.clone());
        async move {
            let opened =
                store.redeem_pairing_code(&hmac, &pending(Flow::Pairing, &format!("r{i}"), 100), 0, 1, &audit_row()).await.unwrap();
            matches!(opened, Redeemed::Opened(_))
        }
    })
    .await;
    assert_eq!(winners(&wins), 1);
}

/// Many browsers race to exchange one QR handoff code: one session; a later exchange is a
/// replay that names the session it minted.
async fn one_handoff_wins_and_a_replay_names_its_session_on(store: DynStore) {
    let (user, device) = approver(&store, "qr").await;
    let row = pending(Flow::Qr, "qr1", 100);
    store.create_approval(&row, 0, 0, None).await.unwrap();
    store.scan_qr("qr1", &user, &device, 1).await.unwrap().unwrap();
    let handoff = b"handoff".to_vec();
    let d = Decision {
        by: DecideBy::Qr { approval_id: "qr1" },
        approve: true,
        user_id: &user,
        device_id: &device,
        requester_name: None,
        handoff: Some((handoff.clone(), 50)),
        passkey_verified: false,
    };
    store.decide_approval(&d, 2).await.unwrap().unwrap();
    let secret = row.device_code_hash.clone();
    let wins = race(RACERS, |i| {
        let (store, user, handoff, secret) = (store.clone(), user.clone(), handoff.clone(), secret.clone());
        async move {
            let by = CollectBy::Handoff { handoff_hash: &handoff, secret_hash: &secret };
            collect(&store, by, &user, &format!("b{i}"), 3).await == Collected::Yes
        }
    })
    .await;
    assert_eq!(winners(&wins), 1);
    let collected = store.approval("qr1").await.unwrap().unwrap();
    let by = CollectBy::Handoff { handoff_hash: &handoff, secret_hash: &secret };
    assert_eq!(collect(&store, by, &user, "late", 4).await, Collected::Replayed { session_id: collected.session_id.unwrap() });
    let wrong = CollectBy::Handoff { handoff_hash: &handoff, secret_hash: b"not the secret" };
    assert_eq!(collect(&store, wrong, &user, "x", 4).await, Collected::No);
}

/// Many requests from one IP race past a per-IP cap of five: exactly five are stored.
async fn the_per_ip_cap_holds_under_concurrency_on(store: DynStore) {
    let created = race(RACERS, |i| {
        let store = store.clone();
        async move { store.create_approval(&pending(Flow::DeviceCode, &format!("cap{i}"), 100), 5, 1, None).await.unwrap() == Created::Yes }
    })
    .await;
    assert_eq!(winners(&created), 5);
    assert_eq!(store.count_live_pending(1).await.unwrap(), 5);
}

/// A request approved by a device that is revoked before the collection is not collected, even
/// if the request itself was not ended (the revocation and the ending are separate writes).
async fn a_revoked_approver_cannot_be_collected_from_on(store: DynStore) {
    let (user, device) = approver(&store, "revoked").await;
    open_pairing(&store, &user, &device, "rv", 100).await;
    let d = Decision {
        by: DecideBy::Pairing { approval_id: "rv" },
        approve: true,
        user_id: &user,
        device_id: &device,
        requester_name: None,
        handoff: None,
        passkey_verified: false,
    };
    store.decide_approval(&d, 1).await.unwrap().unwrap();
    assert!(store.revoke_device(&user, &device, 2).await.unwrap());
    assert_eq!(collect(&store, CollectBy::Id("rv"), &user, "n", 3).await, Collected::No);
}

#[tokio::test]
async fn the_store_follows_the_pure_machine() {
    each_backend("the_store_follows_the_pure_machine", |store| transitions_agree_with_the_domain(store, random_runs())).await;
}

/// A race test on each backend: `name` runs `name_on`.
macro_rules! races {
    ($($name:ident => $body:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            each_backend(stringify!($name), $body).await;
        }
    )*};
}

races! {
    one_decision_wins => one_decision_wins_on,
    one_collection_wins => one_collection_wins_on,
    one_redemption_wins => one_redemption_wins_on,
    one_handoff_wins_and_a_replay_names_its_session => one_handoff_wins_and_a_replay_names_its_session_on,
    the_per_ip_cap_holds_under_concurrency => the_per_ip_cap_holds_under_concurrency_on,
    a_revoked_approver_cannot_be_collected_from => a_revoked_approver_cannot_be_collected_from_on,
}
