//! The Ether Cattle log, format version 6 (version 5 still read).
//!
//! One Kafka partition per cluster carries an ordered stream of *records* (genesis, block, revert,
//! heartbeat). Each record is serialised with [postcard], compressed with zstd, and cut into one or more
//! *frames* (Kafka messages) no larger than a configured limit. The consumer feeds frames to an
//! [`Assembler`], which hands back a record only once every chunk has arrived and checked out.
//!
//! The byte layout is specified in `docs/log-format.md`; golden vectors in `tests/golden/` pin it.
//!
//! Parsing lives here and nowhere else: the store only ever sees typed [`Record`]s.

mod assembler;
mod codec;
mod error;
mod frame;
mod record;
mod v5;

pub use assembler::{Assembled, Assembler};
pub use codec::{decode_payload, encode_payload, encode_record, EncodeOptions, DEFAULT_MAX_FRAME_BYTES};
pub use error::LogError;
pub use frame::{
    Frame, FrameHeader, FLAG_ZSTD, FORMAT_VERSION, MAGIC, MAX_CLUSTER_ID_LEN, OLDEST_READ_VERSION,
};
pub use record::{
    state_root_of_header, AccountChange, AccountPrior, AccountState, Block, BlockRef, ChainSpecSource,
    Checkpoint, ClientHead, Envelope, Genesis, Heartbeat, Log, PublisherState, Receipt, Record, RecordKind,
    Revert, StorageSlot, Transaction, Withdrawal,
};
