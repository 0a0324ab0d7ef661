use thiserror::Error;

/// Everything that can be wrong with bytes read from the log.
///
/// Every variant means "this input is not a valid record of this format"; none of them is transient, so a replica that
/// meets one stops rather than guessing (see `docs/log-format.md`, "Failure handling").
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LogError {
    #[error("frame too short: {len} bytes, a frame header needs at least {needed}")]
    ShortFrame { len: usize, needed: usize },
    #[error("bad magic {found:02x?}: not an Ether Cattle log frame")]
    BadMagic { found: [u8; 2] },
    #[error("unknown log format version {found} (this build reads versions 5 to {supported})")]
    UnknownVersion { found: u8, supported: u8 },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("unknown frame flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("cluster id is empty or not UTF-8")]
    BadClusterId,
    #[error("chunk {index} of record {sequence} is truncated: header says {declared} payload bytes, frame holds {actual}")]
    TruncatedChunk { sequence: u64, index: u32, declared: u32, actual: usize },
    #[error("chunk {index} of record {sequence} has {extra} trailing bytes after its payload")]
    TrailingBytes { sequence: u64, index: u32, extra: usize },
    #[error("chunk header of record {sequence} is inconsistent: {reason}")]
    BadChunkHeader { sequence: u64, reason: String },
    #[error("record {sequence} failed its CRC-32C check: header says {expected:#010x}, payload gives {actual:#010x}")]
    Checksum { sequence: u64, expected: u32, actual: u32 },
    #[error("record {sequence} does not decompress: {reason}")]
    Decompress { sequence: u64, reason: String },
    #[error("record {sequence} ({kind}) does not decode: {reason}")]
    Decode { sequence: u64, kind: &'static str, reason: String },
    #[error("record {sequence} is {len} bytes encoded, over the limit of {limit}")]
    TooLarge { sequence: u64, len: usize, limit: usize },
    #[error("record does not encode: {0}")]
    Encode(String),
}
