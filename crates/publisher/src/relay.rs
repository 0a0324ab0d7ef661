//! Transaction relay: raw transactions that replicas accepted (`eth_sendRawTransaction`) arrive on the
//! cluster's tx topic; the publisher hands each to its client. At-least-once: a message's offset is committed
//! only after the client answered (accepted or rejected); transport failures are retried, never dropped.

use std::{sync::Arc, time::Duration};

use ec_kafka::{KafkaConfig, TxConsumer};
use tracing::{info, warn};

use crate::{
    metrics::Metrics,
    rpc::{RpcClient, RpcError},
};

pub async fn run(
    kafka: KafkaConfig,
    tx_topic: String,
    group: String,
    rpc: Arc<RpcClient>,
    metrics: Arc<Metrics>,
) -> Result<(), ec_kafka::KafkaIoError> {
    let consumer = TxConsumer::new(&kafka, &group, &tx_topic)?;
    info!(topic = %tx_topic, group = %group, "relaying transactions to the client");
    loop {
        let msg = match consumer.next().await {
            Ok(m) => m,
            Err(e) => {
                // Broker trouble: nothing was taken from the topic, so nothing is lost by waiting.
                warn!(error = %e, "reading the transaction topic failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match rpc.send_raw_transaction(&msg.payload).await {
                Ok(hash) => {
                    metrics.relayed_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    info!(%hash, offset = msg.offset, "relayed transaction accepted by the client");
                    break;
                }
                Err(RpcError::Remote { code, message, .. }) => {
                    // The client's verdict (nonce too low, underpriced...): final, logged, counted.
                    metrics.relayed_rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(offset = msg.offset, code, %message, "relayed transaction rejected by the client");
                    break;
                }
                Err(e) => {
                    warn!(offset = msg.offset, error = %e, "cannot reach the client; retrying the transaction");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        while let Err(e) = consumer.commit(msg.offset) {
            warn!(offset = msg.offset, error = %e, "committing the relayed offset failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
