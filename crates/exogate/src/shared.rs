//! What several gateways on one database share beyond the rows: who is alive (heartbeats, so a
//! gateway's running calls are not taken for orphans by another one starting), and changes to
//! agents and phones (PostgreSQL `NOTIFY`, so every gateway's caches follow an API write made on
//! any of them at once; a periodic reload backs it up).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::app::AppState;
use crate::store::HEARTBEAT;

/// The channel API writes announce themselves on.
pub const CHANNEL: &str = "exogate_config";
/// Caches are reloaded this often even without a notification (one missed while reconnecting).
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// PostgreSQL only: says this gateway is alive, and ends the calls of gateways that are not.
pub(crate) async fn heartbeat_loop(app: Arc<AppState>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = app.store.heartbeat().await {
            tracing::warn!(error = %e, "heartbeat to the database failed");
            continue;
        }
        // Another gateway died: its calls are over, whoever notices first marks them.
        match app.store.mark_interrupted().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(calls = n, "calls of a gateway that stopped answering marked interrupted"),
            Err(e) => tracing::warn!(error = %e, "sweep for orphaned calls failed"),
        }
    }
}

/// Reloads the agent and phone caches whenever another gateway changed them.
pub(crate) async fn follow_changes(app: Arc<AppState>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match PgListener::connect(&app.config.database_url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for configuration changes");
                } else {
                    backoff = Duration::from_millis(500);
                    // Whatever changed while we were not listening.
                    reload(&app).await;
                    loop {
                        tokio::select! {
                            n = listener.recv() => match n {
                                Ok(n) if n.payload() == app.store.instance() => {}
                                Ok(_) => reload(&app).await,
                                Err(e) => {
                                    tracing::warn!(error = %e, "configuration listener lost; reconnecting");
                                    break;
                                }
                            },
                            () = tokio::time::sleep(RELOAD_EVERY) => reload(&app).await,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to listen for configuration changes"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn reload(app: &AppState) {
    if let Err(e) = app.reload_caches().await {
        tracing::warn!(error = %e, "cannot reload agents and phones");
    }
}
