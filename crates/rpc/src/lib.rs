//! The replica's Ethereum JSON-RPC server, answering from its own store.
//!
//! - [`api`]: the namespaces (`eth`, `debug`, `trace`, `net`, `web3`), one `#[rpc(server)]` trait each with typed
//!   parameters ([`params`], [`block_id`], [`logs::Filter`], [`evm::CallRequest`]); its module doc lists
//!   where each namespace lives.
//! - [`ctx`]: what they share: the store, limits, pools and caches ([`Ctx`]), one view of the store per
//!   request ([`ctx::Req`]), where work of each cost runs ([`Class`]).
//! - The answers' building blocks: [`convert`] (stored blocks, transactions and receipts to alloy's RPC
//!   types), [`raw`] (RLP), [`fees`], [`logs`], [`evm`] (revm over the store), [`send_tx`], [`subscriptions`];
//!   re-execution of stored blocks ([`exec`]) for geth's traces ([`geth_trace`], [`tracers`], [`geth_shape`])
//!   and parity's ([`parity_trace`]).
//! - [`middleware`]: per-method metrics ([`metrics`]) and the execution APIs' shape for parameter errors.
//!
//! Unknown methods answer "method not found" (-32601). The port opens only once the replica has caught up
//! with its topic. docs/rpc.md lists every method and how it differs from geth, if it does.

pub mod api;
pub mod block_id;
pub mod convert;
pub mod ctx;
pub mod error;
pub mod evm;
pub mod exec;
pub mod fees;
pub mod filters;
pub mod geth_shape;
pub mod geth_trace;
pub mod logs;
pub mod metrics;
pub mod middleware;
pub mod params;
pub mod parity_trace;
pub mod proof;
pub mod raw;
pub mod send_tx;
pub mod simulate;
pub mod subscriptions;
pub mod tracers;
pub mod verify;

use std::{net::SocketAddr, sync::Arc};

use jsonrpsee::{
    server::{Server, ServerHandle},
    RpcModule,
};

pub(crate) use ctx::Req;
pub use ctx::{cores, Class, Ctx, Limits};
pub(crate) use error::{invalid_params, server_error};

/// Most calls in one batch request.
pub const MAX_BATCH: u32 = 100;

/// Largest response the server sends (a batch's answers share it).
const MAX_RESPONSE_BYTES: u32 = 64 << 20;

/// Every namespace, on one module over one shared [`Ctx`].
pub fn module(ctx: Ctx) -> RpcModule<()> {
    use api::{
        debug::DebugApiServer, eth::EthApiServer, net::NetApiServer, trace::TraceApiServer,
        web3::Web3ApiServer,
    };
    let ctx = Arc::new(ctx);
    let mut m = RpcModule::new(());
    // Two namespaces registering one name is a programming error caught by the first test run.
    let unique = "method names are unique across namespaces";
    m.merge(api::eth::Eth(ctx.clone()).into_rpc()).expect(unique);
    m.merge(api::debug::Debug(ctx.clone()).into_rpc()).expect(unique);
    m.merge(api::trace::Trace(ctx.clone()).into_rpc()).expect(unique);
    m.merge(api::net::Net(ctx).into_rpc()).expect(unique);
    m.merge(api::web3::Web3.into_rpc()).expect(unique);
    m
}

/// Serves JSON-RPC (HTTP and websocket on one port) on `addr`, over `ctx` ([`Ctx::new`], then its filters).
pub async fn serve(addr: SocketAddr, ctx: Ctx) -> std::io::Result<(ServerHandle, Arc<metrics::RpcMetrics>)> {
    // Bounded requests and responses: no input can make the server allocate without limit.
    let config = jsonrpsee::server::ServerConfig::builder()
        .max_request_body_size(5 << 20)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Limit(MAX_BATCH))
        .set_id_provider(subscriptions::HexIdProvider)
        .build();
    let module = module(ctx);
    let rpc_metrics = Arc::new(metrics::RpcMetrics::new(module.method_names().map(str::to_owned)));
    let m = rpc_metrics.clone();
    let middleware = jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new().layer_fn(move |inner| {
        middleware::Layer { inner, metrics: m.clone(), max_response_size: MAX_RESPONSE_BYTES as usize }
    });
    let server = Server::builder().set_config(config).set_rpc_middleware(middleware).build(addr).await?;
    Ok((server.start(module), rpc_metrics))
}
