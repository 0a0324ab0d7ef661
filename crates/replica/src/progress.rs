//! Replay progress: counts, rate and what remains, for the operator watching a replica catch up.

use std::time::Instant;

#[derive(Debug)]
pub struct Progress {
    started: Instant,
    pub records: u64,
    pub blocks: u64,
    pub reverts: u64,
    pub duplicates: u64,
    pub bytes: u64,
    /// Records prepared while the one before was written (`ec_store::Pipeline`).
    pub prepared_early: u64,
    /// Groups of blocks written as one batch under one state root check (`ec_store::Pipeline`).
    pub groups: u64,
    last_report: (Instant, u64),
}

impl Default for Progress {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            records: 0,
            blocks: 0,
            reverts: 0,
            duplicates: 0,
            bytes: 0,
            prepared_early: 0,
            groups: 0,
            last_report: (now, 0),
        }
    }
}

impl Progress {
    /// One line for the log: totals, the rate since the last line, and messages left to the high watermark.
    pub fn report(&mut self, next_offset: i64, high_watermark: Option<i64>) -> String {
        let now = Instant::now();
        let (then, records_then) = self.last_report;
        let secs = now.duration_since(then).as_secs_f64().max(1e-3);
        let rate = (self.records - records_then) as f64 / secs;
        self.last_report = (now, self.records);
        let remaining = match high_watermark {
            Some(h) => {
                let left = (h - next_offset).max(0);
                let eta =
                    if rate > 0.0 { format!(", ~{:.0}s to go", left as f64 / rate) } else { String::new() };
                format!("{left} messages behind (high watermark {h}{eta})")
            }
            None => "high watermark unknown".into(),
        };
        format!(
            "{} records ({} blocks, {} reverts, {} duplicates skipped, {} prepared during the write before them, \
             {} block groups under one root, {:.1} MB) in {:.1}s, {:.0} records/s; {}",
            self.records,
            self.blocks,
            self.reverts,
            self.duplicates,
            self.prepared_early,
            self.groups,
            self.bytes as f64 / 1e6,
            self.started.elapsed().as_secs_f64(),
            rate,
            remaining
        )
    }
}
