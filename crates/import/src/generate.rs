//! A synthetic `geth snapshot dump`, for benchmarks and tests of the import at sizes no fixture can have.
//!
//! Keys are spread evenly over the key space with a random offset inside each account's (and each slot's)
//! share, so the file comes out sorted by hashed key, as geth's is, without holding or sorting any keys.
//! The state root is computed while writing and patched into the first line at the end.

use std::{
    fs::File,
    io::{BufWriter, Seek, SeekFrom, Write},
    path::Path,
};

use alloy_primitives::{hex, keccak256, B256, U256};
use alloy_rlp::Encodable;
use alloy_trie::{HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};

use crate::error::{io, Result};

/// Distinct code blobs the contracts share, as real contracts share proxies and token code.
const CODE_VARIANTS: u64 = 16;
/// One account in this many is a contract with code and storage.
const CONTRACT_EVERY: u64 = 4;

/// What [`generate_dump`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedDump {
    pub state_root: B256,
    pub accounts: u64,
    pub slots: u64,
    pub bytes: u64,
}

/// Writes a geth-format dump of `accounts` accounts to `path`: one in four is a contract with one of 16
/// shared code blobs and `slots_per_contract` non-zero slots; the rest are plain accounts. Deterministic
/// for a given `seed`.
pub fn generate_dump(
    path: &Path,
    accounts: u64,
    slots_per_contract: u64,
    seed: u64,
) -> Result<GeneratedDump> {
    let file = File::create(path).map_err(io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let root_line = |root: B256| format!("{{\"root\":\"{root}\"}}\n");
    // Same width as the final line, rewritten once the root is known.
    out.write_all(root_line(B256::ZERO).as_bytes()).map_err(io(path))?;

    let codes: Vec<Vec<u8>> = (0..CODE_VARIANTS)
        .map(|v| {
            let mut rng = Rng::new(seed ^ 0xc0de ^ v);
            let len = 64 + (rng.next() % 2048) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let code_hashes: Vec<B256> = codes.iter().map(keccak256).collect();

    let mut state = HashBuilder::default();
    let mut leaf = Vec::with_capacity(128);
    let mut slots = 0u64;
    let mut rng = Rng::new(seed);
    for i in 0..accounts {
        let key = spread(i, accounts, &mut rng);
        let balance = U256::from(rng.next()) * U256::from(1_000_000_000u64);
        let nonce = rng.next() % 1000;
        let contract = i % CONTRACT_EVERY == 0;
        let (code_hash, storage_root) = if contract {
            let variant = (i / CONTRACT_EVERY % CODE_VARIANTS) as usize;
            (code_hashes[variant], storage_root(seed, i, slots_per_contract))
        } else {
            (KECCAK_EMPTY, EMPTY_ROOT_HASH)
        };
        write!(out, "{{\"balance\":\"{balance}\",\"nonce\":{nonce},\"root\":\"{storage_root}\",\"codeHash\":\"{code_hash}\"")
            .map_err(io(path))?;
        if contract {
            let variant = (i / CONTRACT_EVERY % CODE_VARIANTS) as usize;
            write!(out, ",\"code\":\"0x{}\",\"storage\":{{", hex::encode(&codes[variant]))
                .map_err(io(path))?;
            let mut slot_rng = Rng::new(slot_seed(seed, i));
            for s in 0..slots_per_contract {
                let (slot, value) = slot_entry(s, slots_per_contract, &mut slot_rng);
                leaf.clear();
                value.encode(&mut leaf);
                let sep = if s == 0 { "" } else { "," };
                write!(out, "{sep}\"{slot}\":\"{}\"", hex::encode(&leaf)).map_err(io(path))?;
            }
            slots += slots_per_contract;
            out.write_all(b"}").map_err(io(path))?;
        }
        writeln!(out, ",\"key\":\"{key}\"}}").map_err(io(path))?;

        leaf.clear();
        TrieAccount { nonce, balance, storage_root, code_hash }.encode(&mut leaf);
        state.add_leaf(Nibbles::unpack(key), &leaf);
    }
    let state_root = state.root();
    out.flush().map_err(io(path))?;
    let mut file = out.into_inner().map_err(|e| e.into_error()).map_err(io(path))?;
    let bytes = file.stream_position().map_err(io(path))?;
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    file.write_all(root_line(state_root).as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(GeneratedDump { state_root, accounts, slots, bytes })
}

fn slot_seed(seed: u64, account: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ account.wrapping_add(1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// The storage root of contract `account`, from the same slots its line will hold.
fn storage_root(seed: u64, account: u64, slots: u64) -> B256 {
    if slots == 0 {
        return EMPTY_ROOT_HASH;
    }
    let mut rng = Rng::new(slot_seed(seed, account));
    let mut trie = HashBuilder::default();
    let mut leaf = Vec::with_capacity(33);
    for s in 0..slots {
        let (slot, value) = slot_entry(s, slots, &mut rng);
        leaf.clear();
        value.encode(&mut leaf);
        trie.add_leaf(Nibbles::unpack(slot), &leaf);
    }
    trie.root()
}

/// The `s`-th of `n` slots: a sorted hashed key and a non-zero value of random width.
fn slot_entry(s: u64, n: u64, rng: &mut Rng) -> (B256, U256) {
    let slot = spread(s, n, rng);
    let width = rng.next() % 32;
    let value = rng.u256() >> (8 * width as usize);
    (slot, if value.is_zero() { U256::from(1) } else { value })
}

/// The `i`-th of `n` sorted keys: a random point in the `i`-th of `n` equal shares of the key space.
fn spread(i: u64, n: u64, rng: &mut Rng) -> B256 {
    let share = U256::MAX / U256::from(n.max(1));
    B256::from(share * U256::from(i) + rng.u256() % share)
}

/// splitmix64: deterministic, fast, and good enough to spread keys.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn u256(&mut self) -> U256 {
        U256::from_limbs([self.next(), self.next(), self.next(), self.next()])
    }
}
