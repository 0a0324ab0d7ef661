//! The JSON-RPC namespaces, one `#[rpc(server)]` trait each, in a file of its own: the trait says which
//! methods the namespace has and their typed parameters; one implementation type per namespace answers them
//! over the shared [`Ctx`](crate::ctx::Ctx); [`replayed`] holds what the two tracing namespaces share. "Where is method X" has one answer: `X`'s namespace's file.
//!
//! | namespace | file | serves |
//! |---|---|---|
//! | `eth` | [`eth`] | chain, state, blocks, transactions, receipts, fees, logs, the EVM, relaying, subscriptions |
//! | `debug` | [`debug`] | raw (RLP) headers, blocks and transactions; geth's traces (`debug_trace*`) |
//! | `trace` | [`trace`] | parity-style traces (`trace_*`), as reth and erigon answer them |
//! | `net` | [`net`] | network identity (a replica has no peers) |
//! | `web3` | [`web3`] | the client's version |

pub mod debug;
pub mod eth;
pub mod net;
pub(crate) mod replayed;
pub mod trace;
pub mod web3;
