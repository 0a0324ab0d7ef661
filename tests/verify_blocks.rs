//! `ether-cattle verify-blocks` on geth's scripted chain (blocks on Cancun's rules, then every transaction
//! type, a creation, storage writes, a revert, self-destructs, EIP-7702, a block of hundreds of transfers, on
//! Prague's with its system calls): a
//! replica's database agrees with the re-execution of every block; after one stored slot is changed behind
//! the replica's back, the check fails with exit 3 and names the block, the account, the slot and the
//! transaction that wrote it.

mod harness;

use alloy_primitives::{keccak256, B256};
use harness::{chain::*, cluster::*, script::*};
use std::process::Command;

fn verify_blocks(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ether-cattle"))
        .args(["verify-blocks", "--data-dir"])
        .arg(dir)
        .output()
        .expect("verify-blocks runs");
    let text = harness::output_text(&out);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn verify_blocks_passes_on_the_scripted_chain_and_names_a_corrupted_slot() {
    let prague = prague_in(8);
    let c = Cluster::on(Upstream::geth_cancun_then_prague(prague));
    let touched = run_cancun_then_script(&c.client, prague);
    let (dir, _) = c.replay("verified");

    let (code, text) = verify_blocks(&dir);
    assert_eq!(code, 0, "verify-blocks on a faithful replica:\n{text}");
    assert!(text.contains("agree with their execution"), "{text}");
    eprintln!("faithful: {text}");

    // The storage contract's slot 5: written 0x42, then 0x43 by the next transaction. Its stored value
    // (the head's, which every later block reads) becomes 0x99.
    let contract =
        touched.iter().find(|(_, slots)| slots.first() == Some(&1)).map(|(a, _)| *a).expect("the contract");
    let slot = B256::left_padding_from(&[5]);
    {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &dir).expect("column families");
        let db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), &dir, &cfs).expect("the replica's database");
        let storage = db.cf_handle("storage").expect("the storage table");
        let key = [keccak256(contract).as_slice(), keccak256(slot).as_slice()].concat();
        let stored = db.get_cf(&storage, &key).expect("reads").expect("slot 5 is stored");
        assert_eq!(stored, B256::left_padding_from(&[0x43]).to_vec(), "the script's last write");
        db.put_cf(&storage, &key, B256::left_padding_from(&[0x99]).as_slice()).expect("writes");
    }
    let (code, text) = verify_blocks(&dir);
    assert_eq!(code, 3, "verify-blocks on a corrupted replica:\n{text}");
    eprintln!("corrupted: {text}");
    let contract_text = contract.to_string();
    for want in [
        contract_text.as_str(),
        "slot 0x5",
        "transaction 1 (0x",
        &format!("0x{:064x}", 0x99),
        &format!("0x{:064x}", 0x43),
    ] {
        assert!(text.contains(want), "the difference names {want}:\n{text}");
    }
}
