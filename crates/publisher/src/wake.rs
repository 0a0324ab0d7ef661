//! When to look for new blocks: on every websocket `newHeads` notification where the client offers one,
//! and on a poll interval in any case (some chain changes, such as anvil's rollback, notify nobody).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub struct Wake {
    rx: mpsc::Receiver<()>,
    poll: tokio::time::Interval,
}

impl Wake {
    pub fn new(ws_url: Option<String>, poll_interval: Duration) -> Self {
        let (tx, rx) = mpsc::channel(1);
        if let Some(url) = ws_url {
            tokio::spawn(subscribe(url, tx));
        }
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { rx, poll }
    }

    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.poll.tick() => {}
            Some(()) = self.rx.recv() => {}
        }
    }
}

/// Keeps a `newHeads` subscription open, reconnecting after failures; each notification is a wake-up.
async fn subscribe(url: String, tx: mpsc::Sender<()>) {
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut ws, _)) => {
                let req = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
                if ws.send(tokio_tungstenite::tungstenite::Message::text(req)).await.is_ok() {
                    info!(%url, "subscribed to newHeads");
                    while let Some(Ok(_msg)) = ws.next().await {
                        // Full channel: a wake-up is already pending, which is all that matters.
                        let _ = tx.try_send(());
                    }
                }
                warn!(%url, "newHeads subscription ended; polling until it is back");
            }
            Err(e) => warn!(%url, error = %e, "no websocket; polling"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
