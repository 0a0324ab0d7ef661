//! Progress reports: an import of a mainnet state runs for hours, and the operator needs to know it moves.

use std::{
    io::Read,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::writer::Counts;

const EVERY: Duration = Duration::from_secs(5);

/// A reader that counts the bytes read through it, for the ETA of a file source.
pub(crate) struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (Self { inner, read: read.clone() }, read)
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Logs entries, entries/s, MB/s and an ETA at most every few seconds.
pub(crate) struct Progress {
    started: Instant,
    last: Instant,
    last_entries: u64,
    last_bytes: u64,
    /// Bytes of the source read so far, and its total size, for file sources.
    source: Option<(Arc<AtomicU64>, u64)>,
    calls: u32,
}

impl Progress {
    pub(crate) fn new(source: Option<(Arc<AtomicU64>, u64)>) -> Self {
        let now = Instant::now();
        Self { started: now, last: now, last_entries: 0, last_bytes: 0, source, calls: 0 }
    }

    /// Cheap enough to call per entry: it looks at the clock once in a thousand calls.
    pub(crate) fn tick(&mut self, counts: &Counts) {
        self.calls = self.calls.wrapping_add(1);
        if !self.calls.is_multiple_of(1024) || self.last.elapsed() < EVERY {
            return;
        }
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64().max(1e-3);
        let entries = counts.accounts + counts.slots + counts.codes;
        let rate = (entries - self.last_entries) as f64 / secs;
        let (read, total) = match &self.source {
            Some((read, total)) => (read.load(Ordering::Relaxed), *total),
            None => (counts.bytes, 0),
        };
        let mb_s = (read.saturating_sub(self.last_bytes)) as f64 / secs / 1e6;
        let eta = if total > 0 && read > 0 {
            let elapsed = now.duration_since(self.started).as_secs_f64();
            format!("{}s", (elapsed * (total as f64 / read as f64 - 1.0)).max(0.0) as u64)
        } else {
            "unknown".to_string()
        };
        let percent =
            if total > 0 { format!("{:.1}", read as f64 * 100.0 / total as f64) } else { "-".into() };
        tracing::info!(
            accounts = counts.accounts,
            slots = counts.slots,
            codes = counts.codes,
            entries_per_s = rate as u64,
            mb_per_s = format!("{mb_s:.1}"),
            percent,
            eta,
            "importing state"
        );
        self.last = now;
        self.last_entries = entries;
        self.last_bytes = read;
    }
}
