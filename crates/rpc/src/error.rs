//! The errors every namespace answers with, shaped as the execution APIs (and geth) give them.

use alloy_primitives::Bytes;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};

pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// -32602, with a message and no `data` field (as the execution APIs specify). Parameters that fail to
/// deserialize get the same shape from [`crate::middleware`].
pub(crate) fn invalid_params(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObject::owned(-32602, format!("invalid params: {msg}"), None::<()>)
}

/// -32000: the request is fine but the replica cannot answer it (unknown block, storage failure).
pub(crate) fn server_error(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObject::owned(-32000, msg.to_string(), None::<()>)
}

/// Code 3 with the revert data, as the execution APIs specify for a reverted call.
pub(crate) fn reverted(output: Bytes) -> ErrorObjectOwned {
    ErrorObject::owned(3, "execution reverted", Some(output))
}

/// 4444: history this replica does not hold (EIP-4444's "pruned history unavailable", geth's code for it),
/// naming the oldest block it holds: a cluster started at a checkpoint has no block before it.
pub(crate) fn pruned_history(first: u64) -> ErrorObjectOwned {
    ErrorObject::owned(
        4444,
        format!("pruned history unavailable: this replica holds blocks from {first} on"),
        None::<()>,
    )
}
