//! The frame: one Kafka message. A fixed big-endian header followed by one chunk of the record payload.
//!
//! ```text
//! offset  size  field
//! 0       2     magic 0xEC 0xA7
//! 2       1     format version (4)
//! 3       1     record kind (1 genesis, 2 block, 3 revert, 4 heartbeat, 5 checkpoint)
//! 4       1     flags (bit 0: payload is zstd-compressed; other bits must be 0)
//! 5       1     cluster id length L (1..=255)
//! 6       L     cluster id, UTF-8
//! 6+L     8     sequence number
//! 14+L    4     chunk index (0-based)
//! 18+L    4     chunk count (>= 1)
//! 22+L    4     record payload length (all chunks together)
//! 26+L    4     CRC-32C (Castagnoli) of the whole record payload
//! 30+L    4     chunk length N
//! 34+L    N     chunk bytes
//! ```

use crate::{error::LogError, record::RecordKind};

pub const MAGIC: [u8; 2] = [0xEC, 0xA7];
pub const FORMAT_VERSION: u8 = 6;
/// The oldest format this build still reads (format 5 lacks the block's receipt roots and uncle headers,
/// read as empty).
pub const OLDEST_READ_VERSION: u8 = 5;
pub const FLAG_ZSTD: u8 = 0b0000_0001;
pub const MAX_CLUSTER_ID_LEN: usize = 255;
const FIXED_HEADER: usize = 2 + 1 + 1 + 1 + 1 + 8 + 4 + 4 + 4 + 4 + 4;

/// The header of one frame, as read from (or about to be written to) the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u8,
    pub kind: RecordKind,
    pub flags: u8,
    pub cluster_id: String,
    pub sequence: u64,
    pub chunk_index: u32,
    pub chunk_count: u32,
    pub record_len: u32,
    pub record_crc: u32,
}

impl FrameHeader {
    /// Bytes the header takes on the wire.
    pub fn encoded_len(cluster_id: &str) -> usize {
        FIXED_HEADER + cluster_id.len()
    }
}

/// A parsed frame borrowing its chunk from the message bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub chunk: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn encode(header: &FrameHeader, chunk: &[u8]) -> Result<Vec<u8>, LogError> {
        let id = header.cluster_id.as_bytes();
        if id.is_empty() || id.len() > MAX_CLUSTER_ID_LEN {
            return Err(LogError::Encode(format!(
                "cluster id must be 1..={MAX_CLUSTER_ID_LEN} bytes, got {}",
                id.len()
            )));
        }
        let chunk_len = u32::try_from(chunk.len())
            .map_err(|_| LogError::Encode(format!("chunk of {} bytes", chunk.len())))?;
        let mut out = Vec::with_capacity(FrameHeader::encoded_len(&header.cluster_id) + chunk.len());
        out.extend_from_slice(&MAGIC);
        out.push(header.version);
        out.push(header.kind as u8);
        out.push(header.flags);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&header.sequence.to_be_bytes());
        out.extend_from_slice(&header.chunk_index.to_be_bytes());
        out.extend_from_slice(&header.chunk_count.to_be_bytes());
        out.extend_from_slice(&header.record_len.to_be_bytes());
        out.extend_from_slice(&header.record_crc.to_be_bytes());
        out.extend_from_slice(&chunk_len.to_be_bytes());
        out.extend_from_slice(chunk);
        Ok(out)
    }

    /// Parses one message. Checks everything a single frame can check on its own; cross-chunk checks
    /// (order, CRC) belong to the [`crate::Assembler`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, LogError> {
        let mut r = Reader { bytes, pos: 0 };
        let short = || LogError::ShortFrame { len: bytes.len(), needed: FIXED_HEADER };
        let magic = r.array::<2>().ok_or_else(short)?;
        if magic != MAGIC {
            return Err(LogError::BadMagic { found: magic });
        }
        let version = r.u8().ok_or_else(short)?;
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(LogError::UnknownVersion { found: version, supported: FORMAT_VERSION });
        }
        let kind_byte = r.u8().ok_or_else(short)?;
        let kind = RecordKind::from_byte(kind_byte).ok_or(LogError::UnknownKind(kind_byte))?;
        let flags = r.u8().ok_or_else(short)?;
        if flags & !FLAG_ZSTD != 0 {
            return Err(LogError::UnknownFlags(flags));
        }
        let id_len = r.u8().ok_or_else(short)? as usize;
        let needed = FIXED_HEADER + id_len;
        let short = || LogError::ShortFrame { len: bytes.len(), needed };
        let id = r.take(id_len).ok_or_else(short)?;
        let cluster_id = match std::str::from_utf8(id) {
            Ok(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(LogError::BadClusterId),
        };
        let sequence = r.u64().ok_or_else(short)?;
        let chunk_index = r.u32().ok_or_else(short)?;
        let chunk_count = r.u32().ok_or_else(short)?;
        let record_len = r.u32().ok_or_else(short)?;
        let record_crc = r.u32().ok_or_else(short)?;
        let chunk_len = r.u32().ok_or_else(short)?;
        let rest = &bytes[r.pos..];
        if rest.len() < chunk_len as usize {
            return Err(LogError::TruncatedChunk {
                sequence,
                index: chunk_index,
                declared: chunk_len,
                actual: rest.len(),
            });
        }
        if rest.len() > chunk_len as usize {
            return Err(LogError::TrailingBytes {
                sequence,
                index: chunk_index,
                extra: rest.len() - chunk_len as usize,
            });
        }
        let bad = |reason: String| LogError::BadChunkHeader { sequence, reason };
        if chunk_count == 0 {
            return Err(bad("chunk count is 0".into()));
        }
        if chunk_index >= chunk_count {
            return Err(bad(format!("chunk index {chunk_index} not below chunk count {chunk_count}")));
        }
        if chunk_len > record_len {
            return Err(bad(format!("chunk of {chunk_len} bytes in a record of {record_len}")));
        }
        Ok(Frame {
            header: FrameHeader {
                version,
                kind,
                flags,
                cluster_id,
                sequence,
                chunk_index,
                chunk_count,
                record_len,
                record_crc,
            },
            chunk: rest,
        })
    }
}

/// A bounds-checked cursor: every read returns `None` instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }
}
