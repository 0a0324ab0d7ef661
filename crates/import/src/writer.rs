//! From entries to SST files: one writer per table, either straight to SST (keys arrive sorted) or through an
//! external merge sort (keys arrive in any order).
//!
//! Unsorted input is cut into chunks of bounded size; each chunk is sorted in memory and written as a run
//! file; at the end the runs are merged into non-overlapping SST files. RocksDB would also accept the sorted
//! chunks as overlapping SST files, but those land in level 0 and are only merged by a compaction of the
//! whole table afterwards (and thousands of level-0 files make every read slow until then): the merge here
//! does the same work once, and hands RocksDB files that go straight to the bottom level.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet},
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use alloy_primitives::{hex, keccak256, Bytes, B256};
use ec_store::tables::{Code, StoredAccount, Table, Value};
use rocksdb::SstFileWriter;

use crate::{
    error::{io, ImportError, Result},
    progress::Progress,
    StateSink,
};

/// Size at which an SST file is closed and the next one started. Large enough that a mainnet import makes
/// a few thousand files, small enough that later compactions never have to rewrite a huge one.
const SST_TARGET_BYTES: u64 = 256 << 20;

/// Bookkeeping per entry in the sort buffer (two `Vec` headers), counted against the chunk budget.
const ENTRY_OVERHEAD: usize = 48;

/// Writes keys in strictly ascending order into a series of SST files in `dir`, for
/// [`ec_store::Store::ingest_sst_files`]. Refuses a key out of order.
pub struct SortedSst {
    table: &'static str,
    dir: PathBuf,
    writer: Option<(SstFileWriter<'static>, PathBuf)>,
    bytes_in_file: u64,
    last_key: Vec<u8>,
    files: Vec<PathBuf>,
    /// For the code table only: an equal key is the same blob again, not an error.
    tolerate_equal: bool,
}

impl SortedSst {
    pub fn new(table: &'static str, dir: &Path) -> Self {
        Self {
            table,
            dir: dir.to_path_buf(),
            writer: None,
            bytes_in_file: 0,
            last_key: Vec::new(),
            files: Vec::new(),
            tolerate_equal: table == Code::NAME,
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if !self.files.is_empty() || self.writer.is_some() {
            match key.cmp(&self.last_key) {
                std::cmp::Ordering::Greater => {}
                std::cmp::Ordering::Equal if self.tolerate_equal => return Ok(()),
                std::cmp::Ordering::Equal => {
                    return Err(ImportError::Duplicate { table: self.table, key: hex::encode_prefixed(key) })
                }
                std::cmp::Ordering::Less => {
                    return Err(ImportError::Unsorted {
                        table: self.table,
                        prev: hex::encode_prefixed(&self.last_key),
                        next: hex::encode_prefixed(key),
                    })
                }
            }
        }
        if self.writer.is_none() {
            let path = self.dir.join(format!("{}-{:06}.sst", self.table, self.files.len()));
            let writer = SstFileWriter::create(ec_store::sst_options());
            writer.open(&path).map_err(|source| ImportError::Sst { path: path.clone(), source })?;
            self.writer = Some((writer, path));
        }
        if let Some((writer, path)) = self.writer.as_mut() {
            writer.put(key, value).map_err(|source| ImportError::Sst { path: path.clone(), source })?;
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.bytes_in_file += (key.len() + value.len()) as u64;
        if self.bytes_in_file >= SST_TARGET_BYTES {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some((mut writer, path)) = self.writer.take() {
            writer.finish().map_err(|source| ImportError::Sst { path: path.clone(), source })?;
            self.files.push(path);
        }
        self.bytes_in_file = 0;
        Ok(())
    }

    /// Closes the last file; the files in key order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.close_file()?;
        Ok(self.files)
    }
}

/// External merge sort of one table's entries into [`SortedSst`] files.
pub(crate) struct Sorter {
    table: &'static str,
    dir: PathBuf,
    chunk_budget: usize,
    buffer: Vec<(Vec<u8>, Vec<u8>)>,
    buffered_bytes: usize,
    runs: Vec<PathBuf>,
}

impl Sorter {
    pub(crate) fn new(table: &'static str, dir: &Path, chunk_budget: usize) -> Self {
        Self {
            table,
            dir: dir.to_path_buf(),
            chunk_budget,
            buffer: Vec::new(),
            buffered_bytes: 0,
            runs: Vec::new(),
        }
    }

    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buffered_bytes += key.len() + value.len() + ENTRY_OVERHEAD;
        self.buffer.push((key.to_vec(), value.to_vec()));
        if self.buffered_bytes >= self.chunk_budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the buffer; duplicates of the same entry collapse, conflicting ones are an error.
    fn sort_buffer(&mut self) -> Result<()> {
        self.buffer.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut conflict = None;
        self.buffer.dedup_by(|later, earlier| {
            if later.0 != earlier.0 {
                return false;
            }
            if later.1 != earlier.1 && conflict.is_none() {
                conflict = Some(later.0.clone());
            }
            true
        });
        match conflict {
            Some(key) => Err(ImportError::Duplicate { table: self.table, key: hex::encode_prefixed(key) }),
            None => Ok(()),
        }
    }

    fn spill(&mut self) -> Result<()> {
        self.sort_buffer()?;
        let path = self.dir.join(format!("{}-run-{:06}.bin", self.table, self.runs.len()));
        let file = File::create(&path).map_err(io(&path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for (key, value) in self.buffer.drain(..) {
            write_record(&mut out, &key, &value).map_err(io(&path))?;
        }
        out.flush().map_err(io(&path))?;
        self.buffered_bytes = 0;
        self.runs.push(path);
        Ok(())
    }

    /// Merges everything into SST files; the files in key order.
    pub(crate) fn finish(mut self) -> Result<Vec<PathBuf>> {
        let mut sst = SortedSst::new(self.table, &self.dir);
        if self.runs.is_empty() {
            // Everything fitted in one chunk: no run files at all.
            self.sort_buffer()?;
            for (key, value) in &self.buffer {
                sst.put(key, value)?;
            }
            return sst.finish();
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let mut readers = Vec::with_capacity(self.runs.len());
        for path in &self.runs {
            let file = File::open(path).map_err(io(path))?;
            readers.push(RunReader { path: path.clone(), inner: BufReader::with_capacity(1 << 20, file) });
        }
        // The heap holds the head of every run; ties are broken by run number so the merge is deterministic.
        let mut heap = BinaryHeap::new();
        for (i, reader) in readers.iter_mut().enumerate() {
            if let Some(entry) = reader.next()? {
                heap.push(Reverse((entry, i)));
            }
        }
        let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
        while let Some(Reverse(((key, value), i))) = heap.pop() {
            if let Some(entry) = readers[i].next()? {
                heap.push(Reverse((entry, i)));
            }
            if let Some((last_key, last_value)) = &last {
                if *last_key == key {
                    if *last_value != value {
                        return Err(ImportError::Duplicate {
                            table: self.table,
                            key: hex::encode_prefixed(key),
                        });
                    }
                    continue;
                }
            }
            sst.put(&key, &value)?;
            last = Some((key, value));
        }
        let files = sst.finish()?;
        for path in &self.runs {
            std::fs::remove_file(path).map_err(io(path))?;
        }
        Ok(files)
    }
}

fn write_record(out: &mut impl Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&(key.len() as u32).to_le_bytes())?;
    out.write_all(&(value.len() as u32).to_le_bytes())?;
    out.write_all(key)?;
    out.write_all(value)
}

struct RunReader {
    path: PathBuf,
    inner: BufReader<File>,
}

impl RunReader {
    fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut lens = [0u8; 8];
        // A run ends exactly at a record boundary; a short header is a truncated file.
        match self.inner.read(&mut lens[..1]).map_err(io(&self.path))? {
            0 => return Ok(None),
            _ => self.inner.read_exact(&mut lens[1..]).map_err(io(&self.path))?,
        }
        let klen = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let vlen = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        let mut key = vec![0u8; klen];
        let mut value = vec![0u8; vlen];
        self.inner.read_exact(&mut key).map_err(io(&self.path))?;
        self.inner.read_exact(&mut value).map_err(io(&self.path))?;
        Ok(Some((key, value)))
    }
}

/// One table's writer.
pub(crate) enum TableWriter {
    Sorted(SortedSst),
    Unsorted(Sorter),
}

impl TableWriter {
    pub(crate) fn new(table: &'static str, dir: &Path, sorted: bool, chunk_budget: usize) -> Self {
        if sorted {
            TableWriter::Sorted(SortedSst::new(table, dir))
        } else {
            TableWriter::Unsorted(Sorter::new(table, dir, chunk_budget))
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            TableWriter::Sorted(w) => w.put(key, value),
            TableWriter::Unsorted(w) => w.put(key, value),
        }
    }

    fn finish(self) -> Result<Vec<PathBuf>> {
        match self {
            TableWriter::Sorted(w) => w.finish(),
            TableWriter::Unsorted(w) => w.finish(),
        }
    }
}

/// What the writer counted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub accounts: u64,
    pub slots: u64,
    pub codes: u64,
    /// Key and value bytes handed to the tables.
    pub bytes: u64,
}

/// The [`StateSink`] that writes the three state tables as SST files.
pub(crate) struct StateWriter {
    accounts: TableWriter,
    storage: TableWriter,
    code: TableWriter,
    /// Code hashes already written. Many accounts share code (a mainnet dump repeats the same proxy code
    /// millions of times); 32 bytes per distinct blob is a small price for not sorting the repeats.
    seen_code: HashSet<B256>,
    pub(crate) counts: Counts,
    progress: Progress,
    key: [u8; 64],
}

/// The SST files of each table, ready for ingestion.
pub(crate) struct Files {
    pub accounts: Vec<PathBuf>,
    pub storage: Vec<PathBuf>,
    pub code: Vec<PathBuf>,
}

impl StateWriter {
    /// `sorted`: accounts and slots arrive in ascending hashed order. Code never does.
    pub(crate) fn new(dir: &Path, sorted: bool, chunk_budget: usize, progress: Progress) -> Self {
        use ec_store::tables::{Accounts, Storage};
        Self {
            accounts: TableWriter::new(Accounts::NAME, dir, sorted, chunk_budget),
            storage: TableWriter::new(Storage::NAME, dir, sorted, chunk_budget),
            code: TableWriter::new(Code::NAME, dir, false, chunk_budget),
            seen_code: HashSet::new(),
            counts: Counts::default(),
            progress,
            key: [0u8; 64],
        }
    }

    pub(crate) fn finish(self) -> Result<Files> {
        Ok(Files {
            accounts: self.accounts.finish()?,
            storage: self.storage.finish()?,
            code: self.code.finish()?,
        })
    }
}

impl StateSink for StateWriter {
    fn account(&mut self, hashed_address: B256, account: StoredAccount, code: Option<Bytes>) -> Result<()> {
        if let Some(code) = code.filter(|c| !c.is_empty()) {
            if self.seen_code.insert(account.code_hash) {
                self.code.put(account.code_hash.as_slice(), &code)?;
                self.counts.codes += 1;
                self.counts.bytes += 32 + code.len() as u64;
            }
        }
        let value = account.encode();
        self.accounts.put(hashed_address.as_slice(), &value)?;
        self.counts.accounts += 1;
        self.counts.bytes += 32 + value.len() as u64;
        self.progress.tick(&self.counts);
        Ok(())
    }

    fn slot(&mut self, hashed_address: B256, hashed_slot: B256, value: B256) -> Result<()> {
        if value.is_zero() {
            // Zero is absence: the store keeps only non-zero slots.
            return Ok(());
        }
        self.key[..32].copy_from_slice(hashed_address.as_slice());
        self.key[32..].copy_from_slice(hashed_slot.as_slice());
        let key = self.key;
        self.storage.put(&key, value.as_slice())?;
        self.counts.slots += 1;
        self.counts.bytes += 96;
        self.progress.tick(&self.counts);
        Ok(())
    }
}

/// keccak256 of code, or of nothing.
pub(crate) fn code_hash(code: &[u8]) -> B256 {
    if code.is_empty() {
        alloy_trie::KECCAK_EMPTY
    } else {
        keccak256(code)
    }
}
