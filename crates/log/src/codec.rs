//! Record <-> payload <-> frames.

use std::cell::RefCell;

use crate::{
    error::LogError,
    frame::{Frame, FrameHeader, FLAG_ZSTD, FORMAT_VERSION},
    record::{Envelope, Record, RecordKind},
};

thread_local! {
    // A zstd context costs more to create than to decompress a typical record with: keep one per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Default largest frame: under Kafka's default `message.max.bytes` (1,000,000 on the producer, 1,048,588 on
/// the broker) with room for the Kafka record-batch overhead.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 900_000;

/// Largest decompressed record accepted. Bounds memory on hostile or corrupt input; a mainnet block's state
/// diff is a few MB, a genesis allocation a few tens.
const MAX_RECORD_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Largest frame (Kafka message value) to produce, header included.
    pub max_frame_bytes: usize,
    /// zstd level; 0 disables compression (flag bit 0 clear).
    pub zstd_level: i32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { max_frame_bytes: DEFAULT_MAX_FRAME_BYTES, zstd_level: 3 }
    }
}

/// Serialises a record body (postcard) and compresses it. Returns `(flags, payload)`.
pub fn encode_payload(record: &Record, zstd_level: i32) -> Result<(u8, Vec<u8>), LogError> {
    let raw = match record {
        Record::Genesis(r) => postcard::to_stdvec(r),
        Record::Block(r) => postcard::to_stdvec(r),
        Record::Revert(r) => postcard::to_stdvec(r),
        Record::Heartbeat(r) => postcard::to_stdvec(r),
        Record::Checkpoint(r) => postcard::to_stdvec(r),
    }
    .map_err(|e| LogError::Encode(e.to_string()))?;
    if zstd_level == 0 {
        return Ok((0, raw));
    }
    let compressed =
        zstd::bulk::compress(&raw, zstd_level).map_err(|e| LogError::Encode(format!("zstd: {e}")))?;
    Ok((FLAG_ZSTD, compressed))
}

/// Decompresses and deserialises a complete payload of this format. Rejects trailing bytes: a payload is
/// exactly one record.
pub fn decode_payload(
    kind: RecordKind,
    flags: u8,
    sequence: u64,
    payload: &[u8],
) -> Result<Record, LogError> {
    decode_payload_of(FORMAT_VERSION, kind, flags, sequence, payload)
}

/// [`decode_payload`] for a frame of format `version` (5 or this one): a format-5 block, genesis or checkpoint
/// is read through its own types ([`crate::v5`]) and completed with empty receipt roots and uncle headers.
pub(crate) fn decode_payload_of(
    version: u8,
    kind: RecordKind,
    flags: u8,
    sequence: u64,
    payload: &[u8],
) -> Result<Record, LogError> {
    let owned;
    let raw = if flags & FLAG_ZSTD != 0 {
        let decompress_err = |reason: String| LogError::Decompress { sequence, reason };
        // The format requires the zstd frame to declare its decompressed size (one-shot compression always does):
        // the buffer is sized exactly, and a hostile size is refused before anything is allocated.
        let size = match zstd::zstd_safe::get_frame_content_size(payload) {
            Ok(Some(n)) if n <= MAX_RECORD_BYTES as u64 => n as usize,
            Ok(Some(n)) => {
                return Err(decompress_err(format!("declares {n} bytes, over {MAX_RECORD_BYTES}")))
            }
            Ok(None) => return Err(decompress_err("zstd frame does not declare its size".into())),
            Err(_) => return Err(decompress_err("not a zstd frame".into())),
        };
        owned = DECOMPRESSOR
            .with(|d| match &mut *d.borrow_mut() {
                Some(d) => d.decompress(payload, size),
                None => zstd::bulk::decompress(payload, size),
            })
            .map_err(|e| decompress_err(e.to_string()))?;
        if owned.len() != size {
            return Err(decompress_err(format!("gave {} bytes, frame declares {size}", owned.len())));
        }
        &owned[..]
    } else {
        payload
    };
    fn body<'a, T: serde::Deserialize<'a>>(
        raw: &'a [u8],
        sequence: u64,
        kind: RecordKind,
    ) -> Result<T, LogError> {
        let decode_err = |reason: String| LogError::Decode { sequence, kind: kind.name(), reason };
        let (value, rest) = postcard::take_from_bytes(raw).map_err(|e| decode_err(e.to_string()))?;
        if !rest.is_empty() {
            return Err(decode_err(format!("{} trailing bytes", rest.len())));
        }
        Ok(value)
    }
    if version == 5 {
        use crate::v5;
        return Ok(match kind {
            RecordKind::Genesis => Record::Genesis(body::<v5::Genesis>(raw, sequence, kind)?.into()),
            RecordKind::Block => Record::Block(body::<v5::Block>(raw, sequence, kind)?.into()),
            RecordKind::Revert => Record::Revert(body(raw, sequence, kind)?),
            RecordKind::Heartbeat => Record::Heartbeat(body(raw, sequence, kind)?),
            RecordKind::Checkpoint => Record::Checkpoint(body::<v5::Checkpoint>(raw, sequence, kind)?.into()),
        });
    }
    Ok(match kind {
        RecordKind::Genesis => Record::Genesis(body(raw, sequence, kind)?),
        RecordKind::Block => Record::Block(body(raw, sequence, kind)?),
        RecordKind::Revert => Record::Revert(body(raw, sequence, kind)?),
        RecordKind::Heartbeat => Record::Heartbeat(body(raw, sequence, kind)?),
        RecordKind::Checkpoint => Record::Checkpoint(body(raw, sequence, kind)?),
    })
}

/// Encodes one record into the frames (Kafka message values) to produce, in order.
pub fn encode_record(
    cluster_id: &str,
    sequence: u64,
    record: &Record,
    opts: EncodeOptions,
) -> Result<Vec<Vec<u8>>, LogError> {
    let (flags, payload) = encode_payload(record, opts.zstd_level)?;
    let header_len = FrameHeader::encoded_len(cluster_id);
    if opts.max_frame_bytes <= header_len {
        return Err(LogError::Encode(format!(
            "max frame size {} leaves no room after a {header_len}-byte header",
            opts.max_frame_bytes
        )));
    }
    let record_len = u32::try_from(payload.len()).map_err(|_| LogError::TooLarge {
        sequence,
        len: payload.len(),
        limit: u32::MAX as usize,
    })?;
    let chunk_size = opts.max_frame_bytes - header_len;
    let count = payload.len().div_ceil(chunk_size).max(1);
    let chunk_count = u32::try_from(count).map_err(|_| LogError::TooLarge {
        sequence,
        len: payload.len(),
        limit: chunk_size * u32::MAX as usize,
    })?;
    let record_crc = crc32c::crc32c(&payload);
    let mut frames = Vec::with_capacity(count);
    for index in 0..count {
        let start = index * chunk_size;
        let end = (start + chunk_size).min(payload.len());
        let header = FrameHeader {
            version: FORMAT_VERSION,
            kind: record.kind(),
            flags,
            cluster_id: cluster_id.to_owned(),
            sequence,
            chunk_index: index as u32,
            chunk_count,
            record_len,
            record_crc,
        };
        frames.push(Frame::encode(&header, &payload[start..end])?);
    }
    Ok(frames)
}

impl Envelope {
    pub fn from_header(h: &FrameHeader) -> Self {
        Envelope { version: h.version, kind: h.kind, cluster_id: h.cluster_id.clone(), sequence: h.sequence }
    }
}
