//! The events interface: one event per state change that someone is waiting on. In-process for
//! one instance on SQLite; PostgreSQL LISTEN/NOTIFY across instances, behind the same trait.
//!
//! Who waits for what: a QR login's browser socket watches its approval (woken by
//! `ApprovalChanged`) and, once a phone has scanned it, that phone's device (woken by
//! `DeviceRevoked`, which ended the approval in the store first). A signed-in page's live socket
//! watches its own device, so a revocation reaches it at once. Pollers (device grant, pairing)
//! wait for nothing: each poll reads the row. `Resync` wakes every watcher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A device was revoked; what it approved or held is ended in the store.
    DeviceRevoked { user_id: String, device_id: String },
    /// A cross-device approval changed state (redeemed, approved, denied, collected).
    ApprovalChanged { approval_id: String },
    /// Events may have been missed (a lost connection to the other instances): whoever waits
    /// should look at the store again.
    Resync,
}

pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event);
    /// Only the changes of one approval (and `Resync`): what a waiting browser needs. Tens of
    /// thousands may wait at once, and an event must not wake them all. `Watch::device` adds a
    /// device whose revocation wakes it too.
    fn watch_approval(&self, approval_id: &str) -> Watch;
    /// Only the revocation of one device (and `Resync`): what a signed-in page waits for.
    fn watch_device(&self, device_id: &str) -> Watch;
}

/// Delivers events to this process's watchers: those of the approval or device it names.
#[derive(Default)]
struct Hub {
    watchers: Arc<Watchers>,
}

impl Hub {
    fn deliver(&self, event: Event) {
        match &event {
            Event::ApprovalChanged { approval_id } => self.watchers.wake(&Key::Approval(approval_id.clone())),
            Event::DeviceRevoked { device_id, .. } => self.watchers.wake(&Key::Device(device_id.clone())),
            Event::Resync => self.watchers.wake_all(),
        }
    }
}

/// What a watcher waits on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Approval(String),
    Device(String),
}

/// Approval or device → (registration token, its wake-up) of each watcher.
type WatchMap = HashMap<Key, Vec<(u64, Arc<Notify>)>>;

/// Who waits for which approval. A `Notify` keeps one wake-up for a watcher that is not
/// waiting at that moment, so nothing is lost between looking at the store and waiting again.
#[derive(Default)]
struct Watchers {
    by_id: Mutex<WatchMap>,
    next: AtomicU64,
}

impl Watchers {
    fn watch(self: &Arc<Self>, key: Key) -> Watch {
        let (token, notify) = (self.next.fetch_add(1, Ordering::Relaxed), Arc::new(Notify::new()));
        self.lock().entry(key.clone()).or_default().push((token, notify.clone()));
        Watch { notify, keys: Mutex::new(vec![key]), token, watchers: self.clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchMap> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, key: &Key) {
        for (_, n) in self.lock().get(key).into_iter().flatten() {
            n.notify_one();
        }
    }

    fn wake_all(&self) {
        for (_, n) in self.lock().values().flatten() {
            n.notify_one();
        }
    }
}

/// A registration for the changes of one approval; it ends when dropped.
pub struct Watch {
    notify: Arc<Notify>,
    keys: Mutex<Vec<Key>>,
    token: u64,
    watchers: Arc<Watchers>,
}

impl Watch {
    /// Resolves at the next change (or at once if one came since the last call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Wakes this watch too when `device_id` is revoked (the phone that scanned a QR login).
    pub fn device(&self, device_id: &str) {
        let key = Key::Device(device_id.to_owned());
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.contains(&key) {
            self.watchers.lock().entry(key.clone()).or_default().push((self.token, self.notify.clone()));
            keys.push(key);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.watchers.lock();
        for key in self.keys.get_mut().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(list) = map.get_mut(key) {
                list.retain(|(t, _)| *t != self.token);
                if list.is_empty() {
                    map.remove(key);
                }
            }
        }
    }
}

#[derive(Default)]
pub struct LocalEvents {
    hub: Hub,
}

impl EventBus for LocalEvents {
    fn publish(&self, event: Event) {
        self.hub.deliver(event);
    }

    fn watch_approval(&self, approval_id: &str) -> Watch {
        self.hub.watchers.watch(Key::Approval(approval_id.to_owned()))
    }

    fn watch_device(&self, device_id: &str) -> Watch {
        self.hub.watchers.watch(Key::Device(device_id.to_owned()))
    }
}

/// Events across instances through PostgreSQL LISTEN/NOTIFY. Every instance, this one included,
/// hears every event through its listening connection; a lost connection is re-established and
/// followed by `Resync`, so waiters catch up from the database.
pub struct PgEvents {
    hub: Hub,
    pool: sqlx::PgPool,
    channel: String,
}

impl PgEvents {
    /// `url` names the database (and schema); instances sharing it share the channel.
    pub async fn start(url: &str) -> anyhow::Result<std::sync::Arc<Self>> {
        use sha2::Digest;
        let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_with(opts).await?;
        // Channels are database-wide; tie ours to the database and schema (not to how the URL
        // is spelled), so every instance on the same data shares it and separate schemas stay apart.
        let place: String = sqlx::query_scalar("SELECT current_database() || '/' || current_schema()").fetch_one(&pool).await?;
        let digest = sha2::Sha256::digest(place.as_bytes());
        let channel = format!("latchkey_{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
        let me = std::sync::Arc::new(Self { hub: Hub::default(), pool, channel });
        let listener = me.clone();
        tokio::spawn(async move { listener.listen_forever().await });
        Ok(me)
    }

    async fn listen_forever(self: std::sync::Arc<Self>) {
        loop {
            match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(mut l) => {
                    if let Err(e) = l.listen(&self.channel).await {
                        tracing::warn!(error = %e, "LISTEN failed; retrying");
                    } else {
                        // Whatever happened while we were not listening is in the store.
                        self.hub.deliver(Event::Resync);
                        loop {
                            match l.try_recv().await {
                                Ok(Some(n)) => match serde_json::from_str::<Event>(n.payload()) {
                                    Ok(ev) => self.hub.deliver(ev),
                                    Err(e) => tracing::warn!(error = %e, "unreadable event"),
                                },
                                // The connection was lost; the listener reconnects on the next call.
                                Ok(None) => {
                                    tracing::warn!("event connection lost; reconnecting");
                                    self.hub.deliver(Event::Resync);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "event connection failed");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect for events; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

impl EventBus for PgEvents {
    fn publish(&self, event: Event) {
        let (pool, channel) = (self.pool.clone(), self.channel.clone());
        let Ok(payload) = serde_json::to_string(&event) else { return };
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&pool).await {
                tracing::warn!(error = %e, "NOTIFY failed; waiters will catch up on their next look at the store");
            }
        });
    }

    fn watch_approval(&self, approval_id: &str) -> Watch {
        self.hub.watchers.watch(Key::Approval(approval_id.to_owned()))
    }

    fn watch_device(&self, device_id: &str) -> Watch {
        self.hub.watchers.watch(Key::Device(device_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(w: &Watch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), w.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_watch_wakes_only_for_its_approval_and_keeps_one_wakeup() {
        let bus = LocalEvents::default();
        let (a, b) = (bus.watch_approval("a"), bus.watch_approval("b"));
        bus.publish(Event::ApprovalChanged { approval_id: "a".into() });
        assert!(woken(&a).await, "the change came before the wait and is kept");
        assert!(!woken(&b).await, "another approval's change does not wake it");
        assert!(!woken(&a).await, "one change, one wake-up");
        bus.publish(Event::Resync);
        assert!(woken(&a).await && woken(&b).await, "a resync wakes everyone");
        drop(a);
        bus.publish(Event::ApprovalChanged { approval_id: "a".into() });
        assert!(bus.hub.watchers.lock().get(&Key::Approval("a".into())).is_none(), "a dropped watch is forgotten");
    }

    #[tokio::test]
    async fn a_device_revocation_wakes_the_watches_of_that_device_only() {
        let bus = LocalEvents::default();
        let (a, b) = (bus.watch_approval("a"), bus.watch_approval("b"));
        a.device("phone");
        a.device("phone");
        b.device("other");
        bus.publish(Event::DeviceRevoked { user_id: "u".into(), device_id: "phone".into() });
        assert!(woken(&a).await, "the scanning phone's revocation wakes its QR login");
        assert!(!woken(&a).await, "registered twice, woken once");
        assert!(!woken(&b).await);
        drop(a);
        assert!(bus.hub.watchers.lock().get(&Key::Device("phone".into())).is_none(), "every key of a dropped watch is forgotten");
    }

    #[tokio::test]
    async fn a_page_watching_its_device_hears_its_revocation_and_nothing_else() {
        let bus = LocalEvents::default();
        let (laptop, phone) = (bus.watch_device("laptop"), bus.watch_device("phone"));
        bus.publish(Event::ApprovalChanged { approval_id: "laptop".into() });
        assert!(!woken(&laptop).await, "an approval with the same id is another key");
        bus.publish(Event::DeviceRevoked { user_id: "u".into(), device_id: "laptop".into() });
        assert!(woken(&laptop).await);
        assert!(!woken(&phone).await);
    }
}
