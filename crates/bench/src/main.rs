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
    /// Replay rate of the log into the store, next to RocksDB's raw write rate for the same bytes.
    #[cfg(feature = "cluster")]
    Replay(replay::Args),
    /// JSON-RPC throughput: the replica next to anvil, same chain, same requests, same load.
    #[cfg(feature = "cluster")]
    Rpc(rpc::Args),
    /// debug_traceBlockByNumber (callTracer) on blocks of hundreds and thousands of transactions: the
    /// replica next to geth and anvil, same block, same load.
    #[cfg(feature = "cluster")]
    Traces(traces::Args),
    /// eth_simulateV1 (10 blocks of 5 calls): the replica next to geth, same base block, same load.
    #[cfg(feature = "cluster")]
    Simulate(simulate::Args),
    /// The publisher's per-block time split (fetch, trace, encode, produce) on anvil blocks of given sizes.
    #[cfg(feature = "cluster")]
    Publisher(publisher::Args),
    /// The publisher catching up on a backlog of blocks, sequential next to pipelined, on anvil and geth.
    #[cfg(feature = "cluster")]
    Backlog(backlog::Args),
    /// What a polling filter's store (memory or DynamoDB) adds to an eth_getFilterChanges poll, next to geth.
    #[cfg(feature = "cluster")]
    Filters(filters::Args),
    /// Replay of mainnet-shaped blocks into a database larger than the block cache, next to RocksDB's raw
    /// write rate for the same bytes.
    Mainnet(mainnet::Args),
}

fn main() -> anyhow::Result<()> {
    match Cmd::parse() {
        #[cfg(feature = "cluster")]
        Cmd::Replay(args) => replay::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Publisher(args) => publisher::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Rpc(args) => rpc::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Filters(args) => filters::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Traces(args) => traces::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Simulate(args) => simulate::run(args),
        #[cfg(feature = "cluster")]
        Cmd::Backlog(args) => backlog::run(args),
        Cmd::Mainnet(args) => mainnet::run(args),
    }
}
