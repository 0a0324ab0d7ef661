//! `ether-cattle verify-root`: recomputes the whole state root from the state tables alone (no stored trie
//! node is trusted) and compares it with the head block's header. Exit 0 when equal, 3 when not, 1 when
//! the check cannot run. The check a snapshot's volume gets before it is trusted (docs/operations.md).

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context;
use ec_store::{Reads, Store};

#[derive(clap::Args)]
pub struct VerifyRootArgs {
    /// The replica's database (read-only: works beside a running replica, on the state as of the moment it
    /// opens).
    #[arg(long, env = "EC_DATA_DIR")]
    data_dir: PathBuf,
}

pub fn run(args: VerifyRootArgs) -> ExitCode {
    match verify(&args) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(difference)) => {
            eprintln!("difference: {difference}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `None` when the state hashes to the head's root; otherwise what differs.
fn verify(args: &VerifyRootArgs) -> anyhow::Result<Option<String>> {
    let store = Store::open_read_only(&args.data_dir)
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let (ec_log::BlockRef { number, hash }, expected) =
        store.state_block()?.context("the database holds no state yet")?;
    // A chain whose headers commit to no state (anvil's): the stored trie's root is what the state must hash
    // to, and the header says nothing.
    let unchecked = store.get_meta(ec_store::tables::MetaKey::RootsUnchecked)?;
    let expected = match (&unchecked, store.trie_head()?) {
        (Some(reason), Some(trie)) if trie.hash == hash => {
            println!(
                "this chain's headers commit to no state ({reason}): comparing with the stored trie's root"
            );
            trie.root
        }
        (Some(reason), _) => {
            anyhow::bail!("this chain's headers commit to no state ({reason}), and no trie is stored")
        }
        (None, _) => expected,
    };
    let started = Instant::now();
    let computed = store.state_root().context("hashing the state")?;
    let secs = started.elapsed().as_secs_f64();
    if computed != expected {
        return Ok(Some(format!(
            "the state of block {number} ({hash}) hashes to {computed}, its header's state root is {expected}"
        )));
    }
    println!("block {number} ({hash}): state root {computed} verified from the state tables in {secs:.1}s");
    Ok(None)
}
