//! `ether-cattle verify-blocks`: re-executes stored blocks and compares the state each writes with the
//! block's record in the store (`ec_rpc::verify`). Exit 0 when every block agrees, 3 at the first
//! difference (printed with its block, transaction and key), 1 when the check itself cannot run.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use ec_store::{Reads, Store};

#[derive(clap::Args)]
pub struct VerifyBlocksArgs {
    /// The replica's database (works beside a running replica, read-only).
    #[arg(long, env = "EC_DATA_DIR")]
    data_dir: PathBuf,
    /// First block to check (default: the first block whose parent state the database holds).
    #[arg(long)]
    from: Option<u64>,
    /// Last block to check (default: the head).
    #[arg(long)]
    to: Option<u64>,
}

/// What the check found.
enum Outcome {
    Agrees,
    Differs(String),
}

pub fn run(args: VerifyBlocksArgs) -> ExitCode {
    match verify(&args) {
        Ok(Outcome::Agrees) => ExitCode::SUCCESS,
        Ok(Outcome::Differs(what)) => {
            eprintln!("difference: {what}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify(args: &VerifyBlocksArgs) -> anyhow::Result<Outcome> {
    let store = Store::open_read_only(&args.data_dir)
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let view = store.view();
    let chain = view.chain()?.context("the database has no genesis or checkpoint record yet")?;
    let spec = ec_chainspec::ChainSpec::from_source(&chain.spec, chain.chain_id)?;
    let head = view.head()?.context("the database holds no block yet")?.number;
    // A block needs its parent's state: the first block after the checkpoint (or 1 from genesis).
    let from = args.from.unwrap_or(store.first_state_block() + 1).max(1);
    let to = args.to.unwrap_or(head).min(head);
    anyhow::ensure!(from <= to, "nothing to check: --from {from} is past --to {to} (head {head})");
    let (mut accounts, mut slots, mut records) = (0, 0, 0);
    for number in from..=to {
        let hash = view.canonical_hash(number)?.with_context(|| format!("no canonical block {number}"))?;
        let block = view.block_by_hash(&hash)?.with_context(|| format!("no body for block {number}"))?;
        match ec_rpc::verify::verify_block(&view, &spec, Arc::new(block)) {
            Ok(checked) => {
                accounts += checked.accounts;
                slots += checked.slots;
                records += usize::from(checked.record_checked);
            }
            Err(e) if !e.is_difference() => anyhow::bail!("the check cannot run: {e}"),
            Err(difference) => return Ok(Outcome::Differs(difference.to_string())),
        }
        if number % 1000 == 0 {
            eprintln!("block {number}: agrees");
        }
    }
    println!(
        "blocks {from}..={to} agree with their execution: {accounts} accounts and {slots} slots compared, \
         {records} blocks' change lists checked (the rest are past the undo window)"
    );
    Ok(Outcome::Agrees)
}
