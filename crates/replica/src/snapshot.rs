//! Local snapshots: the stand-in for the EBS snapshot on one machine.
//!
//! A snapshot is a RocksDB checkpoint of the running replica's database (hard links to the immutable table
//! files plus a consistent copy of the rest), so it is taken in milliseconds without stopping replay. The
//! Kafka offset sits inside the database, written in the same batch as the data, so the checkpoint carries
//! its own exact position; the JSON file beside it repeats that position for people and scripts.
//!
//! A new replica starts from one with `--from-snapshot`: when its data directory is empty, the snapshot is
//! copied in first, exactly as a new EBS volume is created from a snapshot.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use ec_store::{Reads, Store};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot name {0:?}: use letters, digits, '.', '-' and '_' only (at most 100)")]
    BadName(String),
    #[error("snapshot {0} already exists")]
    Exists(PathBuf),
    #[error("the database is empty: nothing to snapshot yet")]
    Empty,
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path}: {source}")]
    Store { what: &'static str, path: PathBuf, source: Box<ec_store::StoreError> },
}

/// Where a snapshot stands; also written as `<name>.json` beside the snapshot directory.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub topic: String,
    pub kafka_offset: i64,
    pub sequence: u64,
    pub block_number: Option<u64>,
    pub block_hash: Option<String>,
    /// Seconds since the Unix epoch.
    pub taken_at: u64,
}

/// Takes snapshots of one replica's store into one directory.
pub struct LocalSnapshots {
    pub store: Arc<Store>,
    pub dir: PathBuf,
    pub topic: String,
}

/// `map_err` adapter: an I/O error with what was being done to which path.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Io { what, path, source }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl LocalSnapshots {
    /// Checkpoints the store into `dir/<name>` (default: `snap-<sequence>-<unix time>`).
    pub fn take(&self, name: Option<&str>) -> Result<SnapshotInfo, SnapshotError> {
        let taken_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let name = match name {
            Some(n) if valid_name(n) => n.to_owned(),
            Some(n) => return Err(SnapshotError::BadName(n.to_owned())),
            None => {
                let seq = self.store.position().ok().flatten().map_or(0, |p| p.sequence);
                format!("snap-{seq}-{taken_at}")
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let path = self.dir.join(&name);
        if path.exists() {
            return Err(SnapshotError::Exists(path));
        }
        self.store.checkpoint(&path).map_err(|source| SnapshotError::Store {
            what: "checkpointing into",
            path: path.clone(),
            source: Box::new(source),
        })?;
        // The position is read back from the checkpoint itself: that is what a replica started from it sees.
        let mut info = read_info(&path, &self.topic)?;
        info.taken_at = taken_at;
        let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
        let meta = self.dir.join(format!("{name}.json"));
        std::fs::write(&meta, json).map_err(io("writing", &meta))?;
        Ok(info)
    }
}

/// The position stored in a snapshot (or any database directory).
pub fn read_info(path: &Path, topic: &str) -> Result<SnapshotInfo, SnapshotError> {
    let err = |what| {
        let path = path.to_owned();
        move |source| SnapshotError::Store { what, path, source: Box::new(source) }
    };
    // Meta reads only, so a snapshot of a layout this build upgrades on its first writable open is accepted.
    let (position, head) = Store::position_and_head(path).map_err(err("reading the position of"))?;
    let position = position.ok_or(SnapshotError::Empty)?;
    Ok(SnapshotInfo {
        path: path.to_owned(),
        topic: topic.to_owned(),
        kafka_offset: position.kafka_offset,
        sequence: position.sequence,
        block_number: head.map(|h| h.number),
        block_hash: head.map(|h| h.hash.to_string()),
        taken_at: 0,
    })
}

/// Fills an empty (or missing) `data_dir` from `snapshot`. Returns false, touching nothing, when `data_dir`
/// already holds files: a restarted replica keeps its own, newer database.
pub fn restore(snapshot: &Path, data_dir: &Path) -> Result<bool, SnapshotError> {
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Ok(false);
        }
    }
    // Refuse a directory that is not a database before copying anything.
    read_info(snapshot, "")?;
    std::fs::create_dir_all(data_dir).map_err(io("creating", data_dir))?;
    for entry in std::fs::read_dir(snapshot).map_err(io("listing", snapshot))? {
        let entry = entry.map_err(io("listing", snapshot))?;
        let from = entry.path();
        let to = data_dir.join(entry.file_name());
        // Table files are immutable: a hard link is as good as a copy. Everything else (WAL, MANIFEST,
        // OPTIONS) is written to after opening, so it is copied to keep the snapshot untouched.
        let is_table = from.extension().is_some_and(|e| e == "sst");
        if !(is_table && std::fs::hard_link(&from, &to).is_ok()) {
            std::fs::copy(&from, &to).map_err(io("copying", &from))?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn snapshot_names_cannot_escape_the_directory() {
        for (name, ok) in [
            ("snap-1", true),
            ("a.b_c-D9", true),
            ("", false),
            ("..", false),
            (".hidden", false),
            ("../x", false),
            ("a/b", false),
            ("a b", false),
            (&"x".repeat(101), false),
        ] {
            assert_eq!(valid_name(name), ok, "{name:?}");
        }
    }
}
