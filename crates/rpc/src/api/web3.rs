//! The `web3` namespace.

use jsonrpsee::proc_macros::rpc;

use crate::error::RpcResult;

#[rpc(server, namespace = "web3")]
pub trait Web3Api {
    #[method(name = "clientVersion")]
    fn client_version(&self) -> RpcResult<String>;
}

pub struct Web3;

impl Web3ApiServer for Web3 {
    fn client_version(&self) -> RpcResult<String> {
        Ok(format!("ether-cattle/{}", env!("CARGO_PKG_VERSION")))
    }
}
