//! Helpers shared by the store's integration tests.

use ec_log::{Assembled, Envelope, Record, FORMAT_VERSION};

/// `record` as the replica hands it to the store: one Kafka message at offset `sequence`, a CRC of its own
/// per sequence (so that two records never look like one re-delivered).
pub fn assembled(sequence: u64, record: Record) -> Assembled {
    Assembled {
        envelope: Envelope { version: FORMAT_VERSION, kind: record.kind(), cluster_id: "c".into(), sequence },
        record,
        first_offset: sequence as i64,
        last_offset: sequence as i64,
        payload_len: 0,
        record_crc: sequence as u32,
    }
}
