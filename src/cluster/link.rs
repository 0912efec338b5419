//! The connection to NATS: logging in, reconnecting with backoff forever, and knowing at any
//! moment whether it is up (health says `degraded` while it is not).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentvisor_actors::metrics::METRICS;
use async_nats::{Client, ConnectOptions, Event};

use super::settings::{ClusterSettings, Credentials};

/// The first wait before reconnecting; each failed attempt doubles it, up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether NATS is reachable now, kept up to date by the client's events.
#[derive(Default)]
pub struct LinkState {
    up: AtomicBool,
    /// Set once the first connection succeeded: a later `Connected` is a reconnection.
    ever_up: AtomicBool,
    /// Reconnections so far: what was published meanwhile was lost to this node.
    reconnects: AtomicU64,
}

impl LinkState {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Acquire)
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::Connected => {
                self.up.store(true, Ordering::Release);
                if self.ever_up.swap(true, Ordering::AcqRel) {
                    METRICS.nats_reconnects.inc();
                    self.reconnects.fetch_add(1, Ordering::AcqRel);
                    log::info!("connection to NATS re-established");
                } else {
                    log::info!("connected to NATS");
                }
            }
            Event::Disconnected => {
                self.up.store(false, Ordering::Release);
                log::warn!("connection to NATS lost: this node serves its own projects only until it is back");
            }
            Event::Closed => self.up.store(false, Ordering::Release),
            other => log::info!("NATS: {other}"),
        }
    }
}

/// Opens the client. It does not wait for NATS: a daemon whose NATS is down starts and serves
/// its own projects, and the client keeps trying in the background.
pub async fn connect(settings: &ClusterSettings, state: Arc<LinkState>) -> Result<Client, String> {
    let options = with_credentials(ConnectOptions::new(), &settings.credentials).await?;
    let events = state.clone();
    let options = options
        .name(format!("agentvisor {}/{}", settings.cluster, settings.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(10)))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            events.on_event(&event);
            async {}
        });
    options
        .connect(settings.nats_url.as_str())
        .await
        .map_err(|e| format!("cannot use AGENTVISOR_NATS_URL: {e}"))
}

async fn with_credentials(
    options: ConnectOptions,
    credentials: &Credentials,
) -> Result<ConnectOptions, String> {
    Ok(match credentials {
        Credentials::None => options,
        Credentials::UserPassword(u, p) => options.user_and_password(u.clone(), p.clone()),
        Credentials::Token(t) => options.token(t.clone()),
        Credentials::File(path) => options.credentials_file(path).await.map_err(|e| {
            format!(
                "cannot read the NATS credentials file {}: {e}",
                path.display()
            )
        })?,
    })
}

/// Exponential backoff between reconnection attempts.
fn reconnect_delay(attempts: usize) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16) as u32;
    (BACKOFF_INITIAL * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_backs_off_up_to_a_cap() {
        assert_eq!(reconnect_delay(0), BACKOFF_INITIAL);
        assert_eq!(reconnect_delay(1), BACKOFF_INITIAL);
        assert_eq!(reconnect_delay(2), BACKOFF_INITIAL * 2);
        assert_eq!(reconnect_delay(4), BACKOFF_INITIAL * 8);
        assert_eq!(reconnect_delay(100), BACKOFF_MAX);
    }
}
