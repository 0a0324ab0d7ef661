//! The start-up decision: given what the database holds and what the topic still holds, where to start
//! reading, or why not to start at all. Pure, so every case is a line in a table test.

use ec_store::Position;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartError {
    /// The seed's failure mode: the snapshot is older than Kafka's retention.
    #[error(
        "topic {topic} no longer holds the records this database needs: it has applied up to offset {}, so it \
         needs offset {needed} next, but the earliest offset available is {earliest}. The snapshot is older than \
         the topic's retention; start from a newer snapshot",
        stored.map_or_else(|| "none (empty database)".to_string(), |o| o.to_string())
    )]
    RetentionExceeded { topic: String, stored: Option<i64>, needed: i64, earliest: i64 },
    /// The topic's high watermark is below what the database has applied. On a real Kafka that means
    /// another topic, or one deleted and recreated; some brokers (tansu) also report a partition emptied by
    /// retention this way.
    #[error(
        "topic {topic} ends before this database: it has applied up to offset {stored} but the topic's high \
         watermark is {high}. The topic was recreated or emptied by retention (the snapshot is older than the \
         topic's retention), or this is the wrong topic"
    )]
    AheadOfTopic { topic: String, stored: i64, high: i64 },
}

/// The first offset to read, given the stored position and the partition's `(earliest, high)` watermarks.
pub fn start_offset(
    topic: &str,
    stored: Option<Position>,
    earliest: i64,
    high: i64,
) -> Result<i64, StartError> {
    let needed = stored.map_or(0, |p| p.next_offset());
    if earliest > needed {
        return Err(StartError::RetentionExceeded {
            topic: topic.to_owned(),
            stored: stored.map(|p| p.kafka_offset),
            needed,
            earliest,
        });
    }
    if let Some(p) = stored {
        if high < needed {
            return Err(StartError::AheadOfTopic { topic: topic.to_owned(), stored: p.kafka_offset, high });
        }
    }
    Ok(needed)
}

/// Checks the first record actually read. Some brokers report an earliest offset of 0 for a partition that
/// retention emptied, so the watermarks alone cannot be trusted.
///
/// The first message (at offset `got`) need not be at `needed`: the publisher writes each record in a Kafka
/// transaction, whose commit marker takes an offset no consumer sees, and a fenced publisher's aborted
/// records are skipped too. So the test is the record's sequence: if the first whole record (`sequence`)
/// is later than the one the database needs next, the records in between are gone.
pub fn check_first_record(
    topic: &str,
    stored: Option<Position>,
    needed: i64,
    got: i64,
    sequence: u64,
) -> Result<(), StartError> {
    let expected = stored.map_or(0, |p| p.sequence + 1);
    if got == needed || sequence <= expected {
        return Ok(());
    }
    Err(StartError::RetentionExceeded {
        topic: topic.to_owned(),
        stored: stored.map(|p| p.kafka_offset),
        needed,
        earliest: got,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Option<Position> {
        Some(Position { kafka_offset: offset, sequence: offset as u64 })
    }

    #[test]
    fn start_offset_table() {
        use StartError::*;
        let retention = |stored: Option<i64>, needed, earliest| {
            Err(RetentionExceeded { topic: "t".into(), stored, needed, earliest })
        };
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Option<Position>, i64, i64, Result<i64, StartError>)] = &[
            ("empty db, empty topic", None, 0, 0, Ok(0)),
            ("empty db, full topic", None, 0, 500, Ok(0)),
            ("empty db, genesis gone", None, 10, 500, retention(None, 0, 10)),
            ("caught up", at(99), 0, 100, Ok(100)),
            ("behind", at(49), 0, 100, Ok(50)),
            ("behind, earliest exactly next", at(49), 50, 100, Ok(50)),
            ("snapshot older than retention", at(49), 51, 100, retention(Some(49), 50, 51)),
            (
                "topic shorter than db",
                at(99),
                0,
                50,
                Err(AheadOfTopic { topic: "t".into(), stored: 99, high: 50 }),
            ),
            ("topic emptied by retention, earliest moved", at(49), 100, 100, retention(Some(49), 50, 100)),
        ];
        for (name, stored, earliest, high, want) in cases {
            assert_eq!(&start_offset("t", *stored, *earliest, *high), want, "{name}");
        }
    }

    #[test]
    fn first_record_table() {
        assert_eq!(check_first_record("t", at(9), 10, 10, 10), Ok(()));
        assert_eq!(check_first_record("t", None, 0, 0, 0), Ok(()));
        // A transaction marker at offset 10: the next record is at 11, with the next sequence.
        assert_eq!(check_first_record("t", at(9), 10, 11, 10), Ok(()));
        // A fenced publisher's aborted records skipped, then a record already applied: a duplicate.
        assert_eq!(check_first_record("t", at(9), 10, 40, 9), Ok(()));
        assert_eq!(check_first_record("t", None, 0, 2, 0), Ok(()));
        let err = check_first_record("t", at(9), 10, 250, 248).unwrap_err();
        assert_eq!(
            err,
            StartError::RetentionExceeded { topic: "t".into(), stored: Some(9), needed: 10, earliest: 250 }
        );
        let msg = err.to_string();
        assert!(msg.contains("topic t") && msg.contains("offset 9") && msg.contains("250"), "{msg}");
    }
}
