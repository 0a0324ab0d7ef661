//! A dump line with a million storage entries is streamed: the importer's heap stays far below the size of
//! the line's storage (a million 64-byte entries, and ~140 MB of JSON), so it never holds the line or a map.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use ec_import::{generate_dump, import, Source};
use ec_store::{Store, StoreOptions};

/// Counts the bytes live on the Rust heap and their peak (RocksDB's C++ allocations are not counted: they
/// are bounded by its own options, not by the input).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_million_slot_line_is_imported_in_bounded_memory() {
    const SLOTS: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.jsonl");
    // One account, a contract: its line holds every slot, and (as geth writes it) its key comes last.
    let generated = generate_dump(&path, 1, SLOTS, 3).expect("generate");
    let line_bytes = std::fs::metadata(&path).expect("stat").len();
    assert!(line_bytes > 100_000_000, "the line is {line_bytes} bytes");

    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let summary = import(Source::GethDump(path), &store, &dir.path().join("work")).expect("import");
    let peak = PEAK.load(Ordering::Relaxed) - before;

    eprintln!("peak heap during import: {peak} bytes");
    assert_eq!(summary.slots, SLOTS);
    assert_eq!(summary.state_root, generated.state_root);
    // 64 MB would hold the slots alone; the pending buffer (65,536 slots, 4 MiB) and I/O buffers fit in 16.
    assert!(peak < 16 << 20, "peak heap during import: {peak} bytes");
}
