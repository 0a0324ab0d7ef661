//! `ec-bench`: benchmarks that print figures side by side (the replica next to RocksDB's raw rate, anvil and
//! geth), one subcommand per file. Results and the commands go in `docs/benchmarks.md`.
//!
//! `mainnet` alone needs only the store: `cargo build --release -p ec-bench --no-default-features` builds it
//! without the Kafka, RPC and AWS crates the other subcommands pull in (minutes less on a cold machine).

use clap::Parser;

/// mimalloc, as the `ether-cattle` binary runs (measured against glibc's malloc: docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "cluster")]
mod backlog;
#[cfg(feature = "cluster")]
mod filters;
mod mainnet;
#[cfg(feature = "cluster")]
mod publisher;
#[cfg(feature = "cluster")]
mod replay;
#[cfg(feature = "cluster")]
mod rpc;
#[cfg(feature = "cluster")]
mod simulate;
#[cfg(feature = "cluster")]
mod traces;

#[derive(Parser)]
enum Cmd {
    #[cfg(feature = "cluster")]
    #[command(flatten)]
    Cluster(Cluster),
    /// Replay of mainnet-shaped blocks into a database larger than the block cache, next to RocksDB's raw
    /// write rate for the same bytes.
    Mainnet(mainnet::Args),
}

// The subcommands that start Kafka, the RPC, the publisher or AWS clients (feature `cluster`). A plain
// comment: a doc comment here would become the whole binary's `--help` text, as the enum is flattened.
#[cfg(feature = "cluster")]
#[derive(clap::Subcommand)]
enum Cluster {
    /// Replay rate of the log into the store, next to RocksDB's raw write rate for the same bytes.
    Replay(replay::Args),
    /// JSON-RPC throughput: the replica next to anvil, same chain, same requests, same load.
    Rpc(rpc::Args),
    /// debug_traceBlockByNumber (callTracer) on blocks of hundreds and thousands of transactions: the
    /// replica next to geth and anvil, same block, same load.
    Traces(traces::Args),
    /// eth_simulateV1 (10 blocks of 5 calls): the replica next to geth, same base block, same load.
    Simulate(simulate::Args),
    /// The publisher's per-block time split (fetch, trace, encode, produce) on anvil blocks of given sizes.
    Publisher(publisher::Args),
    /// The publisher catching up on a backlog of blocks, sequential next to pipelined, on anvil and geth.
    Backlog(backlog::Args),
    /// What a polling filter's store (memory or DynamoDB) adds to an eth_getFilterChanges poll, next to geth.
    Filters(filters::Args),
}

#[cfg(feature = "cluster")]
impl Cluster {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Cluster::Replay(args) => replay::run(args),
            Cluster::Publisher(args) => publisher::run(args),
            Cluster::Rpc(args) => rpc::run(args),
            Cluster::Filters(args) => filters::run(args),
            Cluster::Traces(args) => traces::run(args),
            Cluster::Simulate(args) => simulate::run(args),
            Cluster::Backlog(args) => backlog::run(args),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match Cmd::parse() {
        #[cfg(feature = "cluster")]
        Cmd::Cluster(cmd) => cmd.run(),
        Cmd::Mainnet(args) => mainnet::run(args),
    }
}
