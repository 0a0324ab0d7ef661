//! The `net` namespace: the network's identity. A replica joins no peer-to-peer network of its own.

use std::sync::Arc;

use alloy_primitives::U64;
use jsonrpsee::proc_macros::rpc;

use crate::{ctx::Ctx, error::RpcResult};

#[rpc(server, namespace = "net")]
pub trait NetApi {
    /// The chain id, in decimal (as geth answers).
    #[method(name = "version")]
    fn version(&self) -> RpcResult<String>;

    #[method(name = "listening")]
    fn listening(&self) -> RpcResult<bool>;

    #[method(name = "peerCount")]
    fn peer_count(&self) -> RpcResult<U64>;
}

pub struct Net(pub Arc<Ctx>);

impl NetApiServer for Net {
    fn version(&self) -> RpcResult<String> {
        self.0.chain_id().map(|id| id.to_string())
    }

    fn listening(&self) -> RpcResult<bool> {
        Ok(true)
    }

    fn peer_count(&self) -> RpcResult<U64> {
        Ok(U64::ZERO)
    }
}
