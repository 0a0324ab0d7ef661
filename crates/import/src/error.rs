use std::path::PathBuf;

use thiserror::Error;

/// Why an import stopped. Every variant names the file, table or call it concerns, because an import of
/// hundreds of gigabytes is only restarted after someone has read the message.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {source}")]
    Sst { path: PathBuf, source: rocksdb::Error },
    #[error("store: {0}")]
    Store(#[from] ec_store::StoreError),
    #[error("account {account}: {reason}")]
    BadAccount { account: String, reason: String },
    #[error(
        "table {table}: key {next} follows {prev}: this source must be sorted by hashed key (a geth snapshot \
         dump is); import it as an unsorted source instead"
    )]
    Unsorted { table: &'static str, prev: String, next: String },
    #[error("table {table}: key {key} appears twice with different values")]
    Duplicate { table: &'static str, key: String },
    #[error("the store already holds state (table {table} is not empty): import only into a new database")]
    NotEmpty { table: &'static str },
    #[error("the table writer thread: {0}")]
    Writer(&'static str),
    #[error("rpc {method}: {reason}")]
    Rpc { method: &'static str, reason: String },
}

pub type Result<T, E = ImportError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImportError {
    let path = path.into();
    move |source| ImportError::Io { path, source }
}
