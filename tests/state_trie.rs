//! The state trie on geth's scripted chain (Cancun's rules, then every transaction type, a creation, storage
//! writes, a revert, self-destructs, EIP-7702 and the system calls on Prague's): the replica checked every
//! block's state root while it replayed (it stops at the first difference), its `eth_getProof` answers are
//! JSON-equal to geth's (archive, hash scheme) for every touched account and slot at every block inside the
//! proof window, and `ether-cattle verify-root` passes on its database, then fails with exit 3 once one
//! stored leaf is flipped behind its back.

mod harness;

use alloy_primitives::{keccak256, Address, B256};
use harness::{chain::*, cluster::*, script::*, *};
use serde_json::{json, Value};
use std::process::Command;

fn verify_root(dir: &std::path::Path) -> (i32, String) {
    let out =
        Command::new(bin()).args(["verify-root", "--data-dir"]).arg(dir).output().expect("verify-root runs");
    let text = harness::output_text(&out);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn proofs_equal_geths_at_every_block_and_verify_root_catches_a_flipped_leaf() {
    let prague = prague_in(8);
    let c = Cluster::on(Upstream::geth_cancun_then_prague(prague));
    let touched = run_cancun_then_script(&c.client, prague);
    let (head, _) = c.client.head();
    let (_replica, port) = c.rpc_replica(&[]);
    wait_rpc_head(port, head);

    // Every account the scenario touched with its slots, the funded accounts, one that never existed.
    let mut accounts: Vec<(Address, Vec<u64>)> = touched.iter().map(|(a, s)| (*a, s.clone())).collect();
    for dev in DEV {
        accounts.push((dev.parse().expect("address"), vec![0]));
    }
    accounts.push((Address::repeat_byte(0xee), vec![0, 1]));
    let (mut compared, mut diffs) = (0, Vec::new());
    for n in 0..=head {
        for (address, slots) in &accounts {
            // Slots as quantities and as 32-byte words (geth echoes each as given), and one never written.
            let mut keys: Vec<String> = slots.iter().map(|s| format!("{s:#x}")).collect();
            keys.extend(slots.iter().take(1).map(|s| format!("{:#066x}", s)));
            keys.push("0x7777".into());
            let params = json!([address, keys, format!("{n:#x}")]);
            let ours = rpc_call(port, "eth_getProof", params.clone());
            let geth = c.client.call("eth_getProof", params);
            let ours = ours.get("result").cloned().unwrap_or(ours);
            if ours != geth {
                diffs.push(format!("block {n} {address}: ours {ours}\n  geth {geth}"));
            }
            compared += 1;
        }
    }
    assert!(compared > 100, "{compared} proofs compared");
    assert!(
        diffs.is_empty(),
        "{} of {compared} proofs differ; first:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(3)].join("\n")
    );

    // The head's account proof leads to the head's state root.
    let block = c.client.call("eth_getBlockByNumber", json!([format!("{head:#x}"), false]));
    let root: B256 = serde_json::from_value(block["stateRoot"].clone()).expect("state root");
    let (address, _) = &accounts[0];
    let proof = rpc_call(port, "eth_getProof", json!([address, [], "latest"]))["result"].clone();
    let nodes: Vec<alloy_primitives::Bytes> =
        serde_json::from_value(proof["accountProof"].clone()).expect("proof nodes");
    assert!(alloy_trie::proof::verify_proof(
        root,
        alloy_trie::Nibbles::unpack(keccak256(address)),
        Some(account_rlp(&proof)),
        &nodes
    )
    .is_ok());

    // Outside the proof window: geth's "historical state unavailable".
    let (_narrow, narrow_port) = c.rpc_replica(&["--proof-window", "2"]);
    wait_rpc_head(narrow_port, head);
    let old = rpc_call(narrow_port, "eth_getProof", json!([address, [], "0x1"]));
    assert!(old["error"]["message"].as_str().unwrap_or("").contains("historical state unavailable"), "{old}");

    // verify-root from the state tables alone, then with one leaf flipped.
    // geth --dev keeps sealing: the replayed database may hold blocks after `head`, so the block and root the
    // flipped leaf's message names are the ones the faithful run verified.
    let (dir, _) = c.replay("verified");
    let (code, text) = verify_root(&dir);
    assert_eq!(code, 0, "verify-root on a faithful replica:\n{text}");
    let verified =
        text.lines().find(|l| l.contains("verified from the state tables")).expect("a verified line");
    let (block, root) = {
        let words: Vec<&str> = verified.split_whitespace().collect();
        let at = |w: &str| words.iter().position(|x| *x == w).expect("word in the verified line");
        (words[at("block") + 1].to_string(), words[at("root") + 1].to_string())
    };
    assert!(block.parse::<u64>().expect("a block number") >= head, "{verified}");
    {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &dir).expect("column families");
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &dir, &cfs).expect("the database");
        let storage = db.cf_handle("storage").expect("the storage table");
        let mut it = db.raw_iterator_cf(&storage);
        it.seek_to_first();
        let key = it.key().expect("a stored slot").to_vec();
        let mut value = it.value().expect("its value").to_vec();
        drop(it);
        value[31] ^= 1;
        db.put_cf(&storage, &key, &value).expect("writes");
    }
    let (code, text) = verify_root(&dir);
    assert_eq!(code, 3, "verify-root on a flipped leaf:\n{text}");
    assert!(
        text.contains(&format!("block {block} ")) && text.contains(&format!("state root is {root}")),
        "{text}"
    );
}

/// The account leaf a proof answer describes, as the trie encodes it.
fn account_rlp(proof: &Value) -> Vec<u8> {
    let get = |k: &str| serde_json::from_value::<alloy_primitives::U256>(proof[k].clone()).expect("quantity");
    let account = alloy_trie::TrieAccount {
        nonce: get("nonce").to::<u64>(),
        balance: get("balance"),
        storage_root: serde_json::from_value(proof["storageHash"].clone()).expect("hash"),
        code_hash: serde_json::from_value(proof["codeHash"].clone()).expect("hash"),
    };
    alloy_rlp::encode(account)
}
