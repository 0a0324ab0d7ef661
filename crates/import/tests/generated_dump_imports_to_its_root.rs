//! `generate_dump` writes a valid, sorted geth dump whose first line is the root of what it wrote.

use alloy_primitives::{Bytes, B256};
use ec_import::{generate_dump, import, read_dump, DumpFormat, Source, StateSink};
use ec_store::tables::StoredAccount;
use ec_store::{Store, StoreOptions};

#[test]
fn a_generated_dump_imports_to_the_root_it_declares() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gen.jsonl");
    let generated = generate_dump(&path, 2_000, 25, 9).expect("generate");
    assert_eq!(generated.slots, 500 * 25);

    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    let summary = import(Source::GethDump(path.clone()), &store, dir.path()).expect("import");
    assert_eq!(summary.state_root, generated.state_root);
    assert_eq!(summary.declared_root, Some(generated.state_root));
    assert_eq!((summary.accounts, summary.slots, summary.codes), (2_000, 12_500, 16));

    // Same seed, same file; another seed, another state.
    let again = generate_dump(&dir.path().join("again.jsonl"), 2_000, 25, 9).expect("generate");
    let other = generate_dump(&dir.path().join("other.jsonl"), 2_000, 25, 10).expect("generate");
    assert_eq!(again, generated);
    assert_ne!(other.state_root, generated.state_root);

    // Read through the public streaming API: accounts come sorted by hashed address, as geth's would.
    struct Order(Vec<B256>, u64);
    impl StateSink for Order {
        fn account(&mut self, hashed: B256, _: StoredAccount, _: Option<Bytes>) -> ec_import::Result<()> {
            self.0.push(hashed);
            Ok(())
        }
        fn slot(&mut self, _: B256, _: B256, _: B256) -> ec_import::Result<()> {
            self.1 += 1;
            Ok(())
        }
    }
    let mut order = Order(Vec::new(), 0);
    let root = read_dump(DumpFormat::GethSnapshot, &path, &mut order, dir.path(), 4).expect("read");
    assert_eq!(root, Some(generated.state_root));
    assert_eq!(order.1, 12_500);
    assert!(order.0.windows(2).all(|w| w[0] < w[1]), "accounts sorted by hashed address");
}
