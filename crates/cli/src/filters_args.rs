//! Where the replica keeps polling filters (`eth_newFilter` and the rest): the flags, and opening the store.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use ec_rpc::filters::{dynamodb::DynamoFilters, memory::MemoryFilters, methods::Filters};

#[derive(clap::Args)]
pub struct FilterArgs {
    /// Where polling filters live. `dynamodb`: a table every replica behind the balancer shares (a poll may
    /// land on any of them; see docs/rpc.md). `memory`: this replica's own memory, right only for a replica
    /// that serves alone. `off`: the filter methods answer an error.
    #[arg(long, env = "EC_FILTER_STORE", default_value = "memory", value_parser = ["dynamodb", "memory", "off"])]
    filter_store: String,
    /// The DynamoDB table of `--filter-store dynamodb` (the shared stack creates it: output FilterTableArn).
    #[arg(long, env = "EC_FILTER_TABLE")]
    filter_table: Option<String>,
    /// Create the DynamoDB table if it does not exist (the local cluster and tests, where no stack runs).
    #[arg(long, env = "EC_FILTER_CREATE_TABLE")]
    filter_create_table: bool,
    /// Seconds a filter lasts without a poll (geth: 5 minutes).
    #[arg(long, env = "EC_FILTER_TIMEOUT_SECS", default_value_t = ec_rpc::filters::DEFAULT_TIMEOUT.as_secs())]
    filter_timeout_secs: u64,
}

impl FilterArgs {
    pub async fn open(&self) -> anyhow::Result<Option<Filters>> {
        let timeout = Duration::from_secs(self.filter_timeout_secs.max(1));
        let store: Arc<dyn ec_rpc::filters::FilterStore> = match self.filter_store.as_str() {
            "off" => return Ok(None),
            "memory" => Arc::new(MemoryFilters::default()),
            _ => {
                let table =
                    self.filter_table.clone().context("--filter-store dynamodb needs --filter-table")?;
                let client = aws_sdk_dynamodb::Client::new(&crate::aws::sdk_config().await);
                let store = DynamoFilters::new(client, &table);
                if self.filter_create_table {
                    store.create_table().await.with_context(|| format!("creating table {table}"))?;
                }
                tracing::info!(%table, "polling filters in DynamoDB");
                Arc::new(store)
            }
        };
        Ok(Some(Filters { store, timeout }))
    }
}
