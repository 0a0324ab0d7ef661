//! Golden vectors for log format v5 (`docs/log-format.md`).
//!
//! The files in `tests/golden/` are the bytes this format puts on the wire. If the encoding drifts (a field
//! reordered, a type changed, a header byte moved) these tests fail; a deliberate change must bump the format
//! version and add new vectors. Regenerate only on purpose: `EC_BLESS=1 cargo test -p ec-log --test golden`.
//!
//! Uncompressed vectors pin the exact bytes the encoder writes. The zstd vector is pinned on the decode side
//! only: the format fixes what the bytes mean, not what a future zstd release chooses to emit.

use std::path::PathBuf;

use alloy_primitives::{address, b256, bytes, keccak256, Bytes, B256, KECCAK256_EMPTY, U256};
use ec_log::{
    encode_record, AccountChange, AccountPrior, AccountState, Assembler, Block, BlockRef, ChainSpecSource,
    Checkpoint, ClientHead, EncodeOptions, Genesis, Heartbeat, Log, PublisherState, Receipt, Record, Revert,
    StorageSlot, Transaction, Withdrawal,
};

const CLUSTER: &str = "golden";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn block() -> Block {
    let header = bytes!("f90100aabbccdd");
    Block {
        number: 7,
        hash: keccak256(&header),
        parent_hash: b256!("1111111111111111111111111111111111111111111111111111111111111111"),
        timestamp: 1_700_000_084,
        header,
        transactions: vec![Transaction {
            sender: address!("00000000000000000000000000000000000000a1"),
            encoded: bytes!("02f86b827a69800184773594008252089400000000000000000000000000000000000000b1"),
        }],
        receipts: vec![Receipt {
            success: true,
            cumulative_gas_used: 21_000,
            gas_used: 21_000,
            effective_gas_price: 1_000_000_007,
            blob_gas_used: None,
            blob_gas_price: None,
            contract_address: None,
            logs: vec![Log {
                address: address!("00000000000000000000000000000000000000c1"),
                topics: vec![B256::repeat_byte(0xdd)],
                data: bytes!("cafe"),
            }],
        }],
        withdrawals: Some(vec![Withdrawal {
            index: 3,
            validator_index: 9,
            address: address!("00000000000000000000000000000000000000e1"),
            amount_gwei: 32,
        }]),
        state: vec![
            AccountChange {
                address: address!("00000000000000000000000000000000000000a1"),
                storage_wiped: false,
                prior: Some(AccountPrior {
                    balance: U256::from(2 * 10u64.pow(18)),
                    nonce: 0,
                    code_hash: KECCAK256_EMPTY,
                }),
                account: Some(AccountState { balance: U256::from(10u64.pow(18)), nonce: 1, code: None }),
                storage: vec![StorageSlot {
                    slot: B256::with_last_byte(3),
                    prior: B256::with_last_byte(7),
                    value: B256::with_last_byte(8),
                }],
            },
            AccountChange {
                address: address!("00000000000000000000000000000000000000c1"),
                storage_wiped: true,
                prior: None,
                account: Some(AccountState {
                    balance: U256::ZERO,
                    nonce: 1,
                    code: Some(bytes!("6080604052")),
                }),
                storage: vec![
                    StorageSlot {
                        slot: B256::with_last_byte(1),
                        prior: B256::ZERO,
                        value: B256::with_last_byte(0x2a),
                    },
                    StorageSlot { slot: B256::with_last_byte(2), prior: B256::ZERO, value: B256::ZERO },
                ],
            },
            AccountChange {
                address: address!("00000000000000000000000000000000000000d1"),
                storage_wiped: true,
                prior: Some(AccountPrior {
                    balance: U256::from(5),
                    nonce: 1,
                    code_hash: keccak256(bytes!("6000")),
                }),
                account: None,
                storage: vec![],
            },
        ],
        receipt_roots: vec![B256::repeat_byte(0x5a)],
        ommers: vec![bytes!("f901f9a01111")],
    }
}

/// `(name, sequence, record, options)` of every vector.
fn vectors() -> Vec<(&'static str, u64, Record, EncodeOptions)> {
    let plain = EncodeOptions { zstd_level: 0, ..EncodeOptions::default() };
    let genesis_header = bytes!("f90200");
    let genesis = Genesis {
        chain_id: 31337,
        spec: ChainSpecSource::Config(r#"{"chainId":31337,"londonBlock":0,"cancunTime":0}"#.to_string()),
        block: Block {
            number: 0,
            hash: keccak256(&genesis_header),
            parent_hash: B256::ZERO,
            timestamp: 0,
            header: genesis_header,
            transactions: vec![],
            receipts: vec![],
            withdrawals: None,
            state: vec![AccountChange {
                address: address!("00000000000000000000000000000000000000a1"),
                storage_wiped: false,
                prior: None,
                account: Some(AccountState { balance: U256::from(10u64.pow(19)), nonce: 0, code: None }),
                storage: vec![],
            }],
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        },
    };
    let named =
        Genesis { chain_id: 11_155_111, spec: ChainSpecSource::Named("sepolia".into()), ..genesis.clone() };
    let head = BlockRef { number: 7, hash: block().hash };
    let checkpoint = Checkpoint {
        chain_id: 11_155_111,
        spec: ChainSpecSource::Named("sepolia".into()),
        genesis_hash: b256!("25a5cc106eea7138acab33231d7160d69cb777ee0c2c553fcddf5138993e6dd9"),
        genesis_timestamp: 1_633_267_481,
        block: Block { state: vec![], ..block() },
        ancestors: vec![B256::repeat_byte(0x05), block().parent_hash],
    };
    vec![
        ("genesis", 0, Record::Genesis(genesis), plain),
        ("genesis-named", 0, Record::Genesis(named), plain),
        ("checkpoint", 0, Record::Checkpoint(checkpoint), plain),
        ("block", 7, Record::Block(block()), plain),
        ("revert", 8, Record::Revert(Revert { number: 7, hash: block().hash }), plain),
        (
            "heartbeat",
            9,
            Record::Heartbeat(Heartbeat {
                time_ms: 1_700_000_090_000,
                head,
                safe: Some(head),
                finalized: None,
                client_head: Some(ClientHead { number: 9, timestamp: 1_700_000_108 }),
                state: PublisherState::Stuck {
                    number: 8,
                    since_ms: 1_700_000_089_000,
                    error: "decode".into(),
                },
                reorg_window: 64,
            }),
            plain,
        ),
        ("block-zstd", 10, Record::Block(block()), EncodeOptions::default()),
        ("block-chunked", 11, Record::Block(block()), EncodeOptions { max_frame_bytes: 160, zstd_level: 0 }),
    ]
}

fn frame_path(name: &str, index: usize) -> PathBuf {
    dir().join(format!("v{}-{name}-{index}.bin", ec_log::FORMAT_VERSION))
}

fn read_frames(name: &str) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Ok(bytes) = std::fs::read(frame_path(name, frames.len())) {
        frames.push(bytes);
    }
    assert!(!frames.is_empty(), "no golden frames for {name} in {}", dir().display());
    frames
}

fn decode(frames: &[Vec<u8>]) -> Result<Option<(u64, Record, String)>, ec_log::LogError> {
    let mut a = Assembler::new();
    let mut out = None;
    for (i, f) in frames.iter().enumerate() {
        if let Some(rec) = a.push(i as i64, f)? {
            out = Some((rec.envelope.sequence, rec.record, rec.envelope.cluster_id));
        }
    }
    Ok(out)
}

#[test]
fn encoder_writes_the_golden_bytes() {
    let bless = std::env::var_os("EC_BLESS").is_some();
    for (name, seq, record, opts) in vectors() {
        let frames = encode_record(CLUSTER, seq, &record, opts).expect("encodes");
        if bless {
            for (i, f) in frames.iter().enumerate() {
                std::fs::write(frame_path(name, i), f).expect("writes vector");
            }
            continue;
        }
        if opts.zstd_level == 0 {
            assert_eq!(frames, read_frames(name), "{name}: encoding drifted from the golden vector");
        }
    }
    assert!(read_frames("block-chunked").len() >= 3, "the chunked vector must span several frames");
}

#[test]
fn golden_bytes_decode_to_the_records() {
    for (name, seq, record, _) in vectors() {
        let got = decode(&read_frames(name)).expect("golden vector decodes");
        assert_eq!(got, Some((seq, record, CLUSTER.to_string())), "{name}");
    }
}

#[test]
fn every_changed_byte_is_caught() {
    for (name, seq, record, _) in vectors() {
        let frames = read_frames(name);
        let want = Some((seq, record, CLUSTER.to_string()));
        for f in 0..frames.len() {
            for i in 0..frames[f].len() {
                let mut bad = frames.clone();
                bad[f][i] ^= 0x01;
                let got = decode(&bad);
                assert!(
                    got.as_ref().ok() != Some(&want),
                    "{name}: flipping byte {i} of frame {f} went unnoticed"
                );
            }
        }
    }
}

#[test]
fn truncated_and_unknown_version_frames_are_rejected() {
    let frames = read_frames("block");
    let f = &frames[0];
    let err = decode(&[f[..f.len() - 1].to_vec()]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let mut v7 = f.clone();
    v7[2] = 7;
    let err = decode(&[v7]).unwrap_err();
    assert!(err.to_string().contains("unknown log format version 7"), "{err}");
    let empty: Vec<u8> = Bytes::new().to_vec();
    assert!(decode(&[empty]).is_err());
}

/// Frames of formats older than 5 (kept as `tests/golden/v1-genesis-0.bin`, `v2-heartbeat-0.bin`,
/// `v3-genesis-0.bin` and `v4-genesis-0.bin`) are refused before their body is read, with a message naming
/// their version and the ones this build reads.
#[test]
fn older_frames_are_refused_naming_both_versions() {
    for (file, found) in
        [("v1-genesis-0.bin", 1), ("v2-heartbeat-0.bin", 2), ("v3-genesis-0.bin", 3), ("v4-genesis-0.bin", 4)]
    {
        let old = std::fs::read(dir().join(file)).expect("the old vector is kept");
        let err = decode(&[old]).unwrap_err();
        assert_eq!(err, ec_log::LogError::UnknownVersion { found, supported: 6 });
        assert_eq!(
            err.to_string(),
            format!("unknown log format version {found} (this build reads versions 5 to 6)")
        );
    }
}

/// Format 5's vectors (kept as `tests/golden/v5-*.bin`) still decode: to the same records, with the block's
/// receipt roots and uncle headers empty (format 5 did not carry them).
#[test]
fn format_5_frames_still_decode() {
    for (name, seq, record, _) in vectors() {
        let mut frames = Vec::new();
        while let Ok(bytes) = std::fs::read(dir().join(format!("v5-{name}-{}.bin", frames.len()))) {
            frames.push(bytes);
        }
        assert!(!frames.is_empty(), "no format-5 frames for {name}");
        let without = |b: Block| Block { receipt_roots: Vec::new(), ommers: Vec::new(), ..b };
        let want = match record {
            Record::Block(b) => Record::Block(without(b)),
            Record::Genesis(g) => Record::Genesis(Genesis { block: without(g.block), ..g }),
            Record::Checkpoint(c) => Record::Checkpoint(Checkpoint { block: without(c.block), ..c }),
            other => other,
        };
        assert_eq!(
            decode(&frames).expect("a format-5 vector decodes"),
            Some((seq, want, CLUSTER.to_string())),
            "{name}"
        );
    }
}

/// The checkpoint's state root is read from its header without decoding the rest.
#[test]
fn a_checkpoint_names_its_state_root() {
    let header = alloy_consensus::Header { state_root: B256::repeat_byte(0x42), ..Default::default() };
    let rlp = alloy_rlp::encode(&header);
    assert_eq!(ec_log::state_root_of_header(&rlp), Ok(B256::repeat_byte(0x42)));
    assert!(ec_log::state_root_of_header(&rlp[..10]).is_err());
}
