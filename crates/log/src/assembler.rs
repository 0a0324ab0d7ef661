//! Reassembles chunked records on the consumer side.
//!
//! Frames of one record are contiguous in the partition (one publisher, one partition). A publisher that
//! crashed or failed part-way through a record writes it again from chunk 0, so two kinds of fragments can
//! appear and are dropped (counted in [`Assembler::abandoned`]): a partial record cut short by a new chunk 0,
//! and stray later chunks of a failed attempt that no chunk 0 precedes. Dropping them is safe because only
//! whole, CRC-checked records are ever handed out, and the store's sequence check catches any real loss.

use crate::{
    codec::decode_payload_of,
    error::LogError,
    frame::{Frame, FrameHeader},
    record::{Envelope, Record},
};

/// Largest record payload (compressed) the assembler will buffer. Bounds memory on corrupt headers.
const MAX_BUFFERED_BYTES: u32 = 1 << 30;

/// A complete, checked record and where it sits in the partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub envelope: Envelope,
    pub record: Record,
    /// Offset of the record's first frame.
    pub first_offset: i64,
    /// Offset of its last frame: the offset a replica stores once the record is applied.
    pub last_offset: i64,
    /// Payload bytes on the wire (compressed), for rate reporting.
    pub payload_len: usize,
    /// CRC-32C of the payload: tells a true duplicate (same record re-sent) from a conflicting one.
    pub record_crc: u32,
}

#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Partial>,
    /// Partial records dropped because a new chunk 0 arrived (publisher restarted mid-record).
    pub abandoned: u64,
}

#[derive(Debug)]
struct Partial {
    header: FrameHeader,
    first_offset: i64,
    next_index: u32,
    buf: Vec<u8>,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(sequence, chunks received, chunk count)` of the record being reassembled, if any.
    pub fn pending(&self) -> Option<(u64, u32, u32)> {
        self.partial.as_ref().map(|p| (p.header.sequence, p.next_index, p.header.chunk_count))
    }

    /// Feeds one Kafka message. Returns the record once its last chunk has arrived and checked out.
    pub fn push(&mut self, offset: i64, bytes: &[u8]) -> Result<Option<Assembled>, LogError> {
        let frame = Frame::decode(bytes)?;
        let h = &frame.header;
        if h.record_len > MAX_BUFFERED_BYTES {
            return Err(LogError::TooLarge {
                sequence: h.sequence,
                len: h.record_len as usize,
                limit: MAX_BUFFERED_BYTES as usize,
            });
        }
        if h.chunk_index == 0 {
            if self.partial.take().is_some() {
                self.abandoned += 1;
            }
            if h.chunk_count == 1 {
                return finish(frame.header, offset, offset, frame.chunk).map(Some);
            }
            let mut buf = Vec::with_capacity(frame.chunk.len() * 2);
            buf.extend_from_slice(frame.chunk);
            self.partial = Some(Partial { header: frame.header, first_offset: offset, next_index: 1, buf });
            return Ok(None);
        }
        let continues = self.partial.as_ref().is_some_and(|p| {
            p.header.sequence == h.sequence
                && p.header.kind == h.kind
                && p.header.flags == h.flags
                && p.header.cluster_id == h.cluster_id
                && p.header.chunk_count == h.chunk_count
                && p.header.record_len == h.record_len
                && p.header.record_crc == h.record_crc
                && h.chunk_index == p.next_index
        });
        if !continues {
            // A stray chunk of an abandoned attempt: drop it, and any partial it interrupts.
            self.partial = None;
            self.abandoned += 1;
            return Ok(None);
        }
        let Some(p) = self.partial.as_mut() else { return Ok(None) };
        if p.buf.len() + frame.chunk.len() > p.header.record_len as usize {
            return Err(LogError::BadChunkHeader {
                sequence: h.sequence,
                reason: format!("chunks exceed the declared record length {}", h.record_len),
            });
        }
        p.buf.extend_from_slice(frame.chunk);
        p.next_index += 1;
        if p.next_index < p.header.chunk_count {
            return Ok(None);
        }
        match self.partial.take() {
            Some(p) => finish(p.header, p.first_offset, offset, &p.buf).map(Some),
            None => Ok(None),
        }
    }
}

fn finish(
    header: FrameHeader,
    first_offset: i64,
    last_offset: i64,
    payload: &[u8],
) -> Result<Assembled, LogError> {
    if payload.len() != header.record_len as usize {
        return Err(LogError::TruncatedChunk {
            sequence: header.sequence,
            index: header.chunk_count - 1,
            declared: header.record_len,
            actual: payload.len(),
        });
    }
    let actual = crc32c::crc32c(payload);
    if actual != header.record_crc {
        return Err(LogError::Checksum { sequence: header.sequence, expected: header.record_crc, actual });
    }
    let record = decode_payload_of(header.version, header.kind, header.flags, header.sequence, payload)?;
    Ok(Assembled {
        envelope: Envelope::from_header(&header),
        record,
        first_offset,
        last_offset,
        payload_len: payload.len(),
        record_crc: header.record_crc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_record, EncodeOptions, Heartbeat, Record, Revert};
    use alloy_primitives::B256;

    fn big_record() -> Record {
        // Uncompressed, with room for 8 payload bytes per frame, a revert spans several chunks.
        Record::Revert(Revert { number: 42, hash: B256::repeat_byte(7) })
    }

    fn chunks(seq: u64) -> Vec<Vec<u8>> {
        let opts = EncodeOptions { max_frame_bytes: FrameHeader::encoded_len("c") + 8, zstd_level: 0 };
        encode_record("c", seq, &big_record(), opts).expect("encodes")
    }

    #[test]
    fn reassembles_only_when_every_chunk_arrived() {
        let frames = chunks(5);
        assert!(frames.len() >= 4, "needs several chunks, got {}", frames.len());
        let mut a = Assembler::new();
        for (i, f) in frames.iter().enumerate() {
            let out = a.push(100 + i as i64, f).expect("valid chunk");
            if i + 1 < frames.len() {
                assert!(out.is_none(), "record handed out before its last chunk");
                assert_eq!(a.pending(), Some((5, i as u32 + 1, frames.len() as u32)));
            } else {
                let rec = out.expect("complete");
                assert_eq!(rec.record, big_record());
                assert_eq!((rec.first_offset, rec.last_offset), (100, 100 + i as i64));
            }
        }
        assert_eq!(a.pending(), None);
    }

    #[test]
    fn a_restarted_record_discards_the_fragment() {
        let frames = chunks(5);
        let mut a = Assembler::new();
        a.push(0, &frames[0]).expect("chunk 0");
        a.push(1, &frames[1]).expect("chunk 1");
        // The publisher crashed and writes record 5 again from its first chunk.
        let mut out = None;
        for (i, f) in frames.iter().enumerate() {
            out = a.push(2 + i as i64, f).expect("valid chunk");
        }
        assert_eq!(a.abandoned, 1);
        assert_eq!(out.expect("complete").first_offset, 2);
    }

    #[test]
    fn stray_chunks_are_dropped_and_never_make_a_record() {
        let frames = chunks(5);
        let other = chunks(6);
        let mut a = Assembler::new();
        // No chunk 0 before it (a failed attempt's later frame, or a replica starting mid-record).
        assert_eq!(a.push(0, &frames[1]).expect("dropped"), None);
        // A gap inside a record drops the partial.
        a.push(1, &frames[0]).expect("chunk 0");
        assert_eq!(a.push(2, &frames[2]).expect("dropped"), None);
        assert_eq!(a.pending(), None);
        // A chunk of another record interrupting a partial drops both.
        a.push(3, &frames[0]).expect("chunk 0");
        assert_eq!(a.push(4, &other[1]).expect("dropped"), None);
        assert_eq!(a.abandoned, 3);
        // The record written again from chunk 0 is whole.
        let mut out = None;
        for (i, f) in frames.iter().enumerate() {
            out = a.push(10 + i as i64, f).expect("valid");
        }
        assert_eq!(out.expect("complete").record, big_record());
    }

    #[test]
    fn single_frame_records_pass_straight_through() {
        let rec = Record::Heartbeat(Heartbeat {
            time_ms: 1,
            head: crate::BlockRef { number: 1, hash: B256::ZERO },
            safe: None,
            finalized: None,
            client_head: None,
            state: crate::PublisherState::Following,
            reorg_window: 64,
        });
        let frames = encode_record("c", 9, &rec, EncodeOptions::default()).expect("encodes");
        assert_eq!(frames.len(), 1);
        let out = Assembler::new().push(3, &frames[0]).expect("decodes").expect("complete");
        assert_eq!((out.envelope.sequence, out.record, out.last_offset), (9, rec, 3));
    }
}
