//! `ether-cattle import-state`: builds a replica database at block N of a synced node from a dump of its
//! state, checked against block N's state root, ready for the topic's checkpoint record.
//!
//! The import itself (streaming the dump, sorted SST files, ingestion, the root) is `ec-import`; this
//! command reads block N's header from a node of the chain, refuses a state whose root differs from it, and
//! only then marks the database as imported.

use std::path::PathBuf;

use alloy_primitives::B256;
use anyhow::{bail, Context};
use ec_import::Source;
use ec_publisher::rpc::{BlockId, RpcClient};
use ec_store::{tables::ImportedState, Store, StoreOptions};

#[derive(clap::Args)]
pub struct ImportStateArgs {
    /// The new database's directory (must be empty or absent).
    #[arg(long, env = "EC_DATA_DIR")]
    data_dir: PathBuf,
    /// The block whose state is imported: the publisher's --start-block.
    #[arg(long)]
    block: u64,
    /// A node of the chain, for block N's header (its hash and state root). With --from-rpc it is also the
    /// source of the state.
    #[arg(long, env = "EC_RPC_URL")]
    rpc_url: String,
    /// A `geth snapshot dump` file (JSON lines, accounts by hashed address).
    #[arg(long, group = "source")]
    geth_dump: Option<PathBuf>,
    /// A `reth init-state` file (JSON lines, plain addresses and slots).
    #[arg(long, group = "source")]
    reth_state: Option<PathBuf>,
    /// Read the state from --rpc-url itself (debug_accountRange and debug_storageRangeAt; geth, erigon).
    /// For small chains and tests: a mainnet-sized state takes far longer this way than from a file.
    #[arg(long, group = "source")]
    from_rpc: bool,
    /// Scratch space for sorted table files; default `<data-dir>.import` (same file system, so ingestion
    /// moves files instead of copying them).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

pub async fn run(args: ImportStateArgs) -> anyhow::Result<()> {
    let source = match (&args.geth_dump, &args.reth_state, args.from_rpc) {
        (Some(f), None, false) => Source::GethDump(f.clone()),
        (None, Some(f), false) => Source::RethInitState(f.clone()),
        (None, None, true) => Source::Rpc { url: args.rpc_url.clone(), block: args.block },
        _ => bail!("name one source: --geth-dump FILE, --reth-state FILE or --from-rpc"),
    };
    if args.block == 0 {
        bail!("block 0 is the genesis block: a cluster at block 0 starts from its genesis file (publisher --genesis), not an import");
    }
    let (hash, state_root) = block_header(&args.rpc_url, args.block).await?;
    tracing::info!(block = args.block, %hash, %state_root, "importing the state of block {}", args.block);

    if args.data_dir.join("CURRENT").exists() {
        bail!(
            "{} already holds a database: an import starts from an empty directory (delete it to start over)",
            args.data_dir.display()
        );
    }
    let work_dir = args.work_dir.clone().unwrap_or_else(|| args.data_dir.with_extension("import"));
    let data_dir = args.data_dir.clone();
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = Store::open(&data_dir, StoreOptions::default())
            .with_context(|| format!("creating the database at {}", data_dir.display()))?;
        let summary = ec_import::import(source, &store, &work_dir).context("importing the state")?;
        Ok((store, summary))
    })
    .await
    .context("the import task")??;
    let (store, summary) = summary;
    tracing::info!(
        accounts = summary.accounts,
        slots = summary.slots,
        codes = summary.codes,
        mb = summary.bytes / 1_000_000,
        secs = summary.elapsed.as_secs_f64(),
        root = %summary.state_root,
        "state imported"
    );
    if summary.state_root != state_root {
        let declared =
            summary.declared_root.map(|r| format!("; the source declares {r}")).unwrap_or_default();
        bail!(
            "the imported state's root is {}, but block {}'s header says {state_root}{declared}: the dump is of \
             another block or was altered. The database at {} is not usable; delete it",
            summary.state_root,
            args.block,
            args.data_dir.display()
        );
    }
    store.mark_imported(&ImportedState { number: args.block, hash, state_root })?;
    println!(
        "imported block {} ({hash}): {} accounts, {} slots, {} code blobs, state root {state_root}",
        args.block, summary.accounts, summary.slots, summary.codes
    );
    Ok(())
}

/// Block `number`'s hash and state root, from a node of the chain.
async fn block_header(url: &str, number: u64) -> anyhow::Result<(B256, B256)> {
    let rpc = RpcClient::new(url, std::time::Duration::from_secs(60))?;
    let block = rpc
        .block(BlockId::Number(number))
        .await
        .with_context(|| format!("reading block {number} from {url}"))?
        .with_context(|| format!("{url} has no block {number}"))?;
    Ok((block.header.hash, block.header.inner.state_root))
}
