//! The events interface: one event per state change that someone may be waiting on (a socket,
//! a poller). In-process broadcast for one instance on SQLite; PostgreSQL LISTEN/NOTIFY across
//! instances, behind the same trait.

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    SessionRevoked {
        user_id: String,
        session_id: String,
    },
    DeviceRevoked {
        user_id: String,
        device_id: String,
    },
    AllSessionsRevoked {
        user_id: String,
    },
    /// A cross-device approval changed state (redeemed, approved, denied, collected).
    ApprovalChanged {
        approval_id: String,
    },
    /// Events may have been missed (a lost connection to the other instances): whoever waits
    /// should look at the store again.
    Resync,
}

pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event);
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

pub struct LocalEvents {
    tx: broadcast::Sender<Event>,
}

impl Default for LocalEvents {
    fn default() -> Self {
        Self { tx: broadcast::channel(1024).0 }
    }
}

impl EventBus for LocalEvents {
    fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody was waiting.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Events across instances through PostgreSQL LISTEN/NOTIFY. Every instance, this one included,
/// hears every event through its listening connection; a lost connection is re-established and
/// followed by `Resync`, so waiters catch up from the database.
pub struct PgEvents {
    tx: broadcast::Sender<Event>,
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
        let (tx, _) = broadcast::channel(4096);
        let me = std::sync::Arc::new(Self { tx, pool, channel });
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
                        let _ = self.tx.send(Event::Resync);
                        loop {
                            match l.try_recv().await {
                                Ok(Some(n)) => match serde_json::from_str::<Event>(n.payload()) {
                                    Ok(ev) => {
                                        let _ = self.tx.send(ev);
                                    }
                                    Err(e) => tracing::warn!(error = %e, "unreadable event"),
                                },
                                // The connection was lost; the listener reconnects on the next call.
                                Ok(None) => {
                                    tracing::warn!("event connection lost; reconnecting");
                                    let _ = self.tx.send(Event::Resync);
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

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
