//! A deterministic generator of valid logs: genesis, blocks with state changes, reverts (reorgs),
//! heartbeats, and now and then a block large enough to be chunked.
//!
//! "Valid" means a replica can apply every record: block numbers and parent hashes chain, hashes are the
//! keccak256 of their headers, reverts always name the current head, and every prior value is the value the
//! state held before the block (the generator keeps the state, and undoes it on reverts).

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{keccak256, Address, Bytes, B256, KECCAK256_EMPTY, U256};
use ec_log::{
    AccountChange, AccountPrior, AccountState, Block, BlockRef, ClientHead, Genesis, Heartbeat, Log,
    PublisherState, Receipt, Record, Revert, StorageSlot, Transaction, Withdrawal,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub seed: u64,
    /// Distinct accounts the blocks touch; a small pool means many overwrites.
    pub accounts: usize,
    /// Distinct storage slots per contract.
    pub slots: u64,
    /// Chance that a record is a reorg (1 to `max_reorg_depth` reverts, then a new branch).
    pub reorg_chance: f64,
    pub max_reorg_depth: u64,
    pub heartbeat_chance: f64,
    /// Chance that a block carries a large random code blob (incompressible, so it is chunked).
    pub big_block_chance: f64,
    pub big_block_bytes: usize,
    /// Transactions per ordinary block, at most.
    pub max_txs: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            accounts: 64,
            slots: 32,
            reorg_chance: 0.03,
            max_reorg_depth: 4,
            heartbeat_chance: 0.2,
            big_block_chance: 0.004,
            big_block_bytes: 200_000,
            max_txs: 4,
        }
    }
}

/// An account of the generated state, as a replica stores it.
#[derive(Debug, Clone)]
struct ModelAccount {
    balance: U256,
    nonce: u64,
    code_hash: B256,
    storage: BTreeMap<B256, B256>,
}

pub struct LogGenerator {
    rng: StdRng,
    pub opts: GenOptions,
    /// The canonical chain so far, genesis first.
    chain: Vec<BlockRef>,
    /// The state at the head, and per canonical block what it replaced (to undo on a revert).
    state: HashMap<Address, ModelAccount>,
    undo: Vec<Vec<(Address, Option<ModelAccount>)>>,
    next_sequence: u64,
    /// Reverts still to emit in the reorg under way.
    pending_reverts: u64,
    pub chain_id: u64,
}

impl LogGenerator {
    pub fn new(opts: GenOptions) -> Self {
        Self {
            rng: StdRng::seed_from_u64(opts.seed),
            opts,
            chain: Vec::new(),
            state: HashMap::new(),
            undo: Vec::new(),
            next_sequence: 0,
            pending_reverts: 0,
            chain_id: 31337,
        }
    }

    /// The first `count` records of the log, each with its sequence number.
    pub fn records(opts: GenOptions, count: usize) -> Vec<(u64, Record)> {
        let mut g = LogGenerator::new(opts);
        (0..count).map(|_| g.next_record()).collect()
    }

    pub fn head(&self) -> Option<BlockRef> {
        self.chain.last().copied()
    }

    pub fn next_record(&mut self) -> (u64, Record) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let record = self.pick();
        (sequence, record)
    }

    fn pick(&mut self) -> Record {
        let Some(head) = self.head() else {
            let block = self.block(0, B256::ZERO, true);
            self.chain.push(BlockRef { number: 0, hash: block.hash });
            let spec = ec_log::ChainSpecSource::Config(format!(
                r#"{{"chainId":{},"londonBlock":0}}"#,
                self.chain_id
            ));
            return Record::Genesis(Genesis { chain_id: self.chain_id, spec, block });
        };
        if self.pending_reverts > 0 && head.number > 0 {
            self.pending_reverts -= 1;
            self.chain.pop();
            for (address, old) in self.undo.pop().unwrap_or_default().into_iter().rev() {
                match old {
                    Some(account) => self.state.insert(address, account),
                    None => self.state.remove(&address),
                };
            }
            return Record::Revert(Revert { number: head.number, hash: head.hash });
        }
        self.pending_reverts = 0;
        if self.rng.random_bool(self.opts.heartbeat_chance) {
            let safe = self.chain.get(self.chain.len().saturating_sub(8)).copied();
            let finalized = self.chain.get(self.chain.len().saturating_sub(16)).copied();
            return Record::Heartbeat(Heartbeat {
                time_ms: 1_700_000_000_000 + head.number * 12_000,
                head,
                safe,
                finalized,
                client_head: Some(ClientHead {
                    number: head.number,
                    timestamp: 1_700_000_000 + head.number * 12,
                }),
                state: PublisherState::Following,
                reorg_window: self.opts.max_reorg_depth,
            });
        }
        if head.number > self.opts.max_reorg_depth && self.rng.random_bool(self.opts.reorg_chance) {
            self.pending_reverts = self.rng.random_range(1..=self.opts.max_reorg_depth);
            return self.pick();
        }
        let block = self.block(head.number + 1, head.hash, false);
        self.chain.push(BlockRef { number: block.number, hash: block.hash });
        Record::Block(block)
    }

    fn address(&mut self) -> Address {
        let i = self.rng.random_range(0..self.opts.accounts as u64);
        Address::left_padding_from(&(i + 0x1000).to_be_bytes())
    }

    fn bytes(&mut self, len: usize) -> Bytes {
        let mut v = vec![0u8; len];
        self.rng.fill(&mut v[..]);
        v.into()
    }

    fn block(&mut self, number: u64, parent_hash: B256, genesis: bool) -> Block {
        // A stand-in header: unique per branch (random salt), hashed like a real one.
        let salt: u64 = self.rng.random();
        let tx_count = if genesis { 0 } else { self.rng.random_range(0..=self.opts.max_txs) };
        let mut transactions = Vec::with_capacity(tx_count);
        let mut receipts = Vec::with_capacity(tx_count);
        let mut cumulative = 0;
        for _ in 0..tx_count {
            let len = self.rng.random_range(100..200);
            transactions.push(Transaction { sender: self.address(), encoded: self.bytes(len) });
            let gas_used = self.rng.random_range(21_000..200_000);
            cumulative += gas_used;
            let logs = (0..self.rng.random_range(0..3))
                .map(|_| Log {
                    address: self.address(),
                    topics: vec![B256::from(self.rng.random::<[u8; 32]>())],
                    data: self.bytes(32),
                })
                .collect();
            receipts.push(Receipt {
                success: self.rng.random_bool(0.9),
                cumulative_gas_used: cumulative,
                gas_used,
                effective_gas_price: 1_000_000_000,
                blob_gas_used: None,
                blob_gas_price: None,
                contract_address: None,
                logs,
            });
        }
        let touched = if genesis { self.opts.accounts } else { self.rng.random_range(1..8) };
        let mut state: Vec<AccountChange> = (0..touched).map(|_| self.account_change(genesis)).collect();
        if !genesis && self.rng.random_bool(self.opts.big_block_chance) {
            let code = self.bytes(self.opts.big_block_bytes);
            state.push(AccountChange {
                address: self.address(),
                storage_wiped: true,
                prior: None,
                account: Some(AccountState { balance: U256::from(1), nonce: 1, code: Some(code) }),
                storage: Vec::new(),
            });
        }
        // The format wants each address once, sorted: the last change of an address wins.
        state.reverse();
        state.sort_by_key(|c| c.address);
        state.dedup_by_key(|c| c.address);
        let undo = state.iter_mut().map(|c| self.apply_to_model(c)).collect();
        self.undo.push(undo);
        let header = stand_in_header(parent_hash, salt, self.state_root(), number);
        let hash = keccak256(&header);
        let withdrawals = (!genesis).then(|| {
            vec![Withdrawal {
                index: number,
                validator_index: 7,
                address: Address::repeat_byte(0x77),
                amount_gwei: 1,
            }]
        });
        Block {
            number,
            hash,
            parent_hash,
            timestamp: 1_700_000_000 + number * 12,
            header,
            transactions,
            receipts,
            withdrawals,
            state,
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        }
    }

    /// The state root of the model, as the chain's header would commit to it.
    fn state_root(&self) -> B256 {
        use alloy_rlp::Encodable;
        use alloy_trie::{HashBuilder, Nibbles, TrieAccount};
        let accounts: BTreeMap<B256, &ModelAccount> =
            self.state.iter().map(|(address, a)| (keccak256(address), a)).collect();
        let mut state = HashBuilder::default();
        for (key, account) in accounts {
            let slots: BTreeMap<B256, U256> =
                account.storage.iter().map(|(slot, v)| (keccak256(slot), U256::from_be_bytes(v.0))).collect();
            let mut storage = HashBuilder::default();
            for (slot, value) in slots {
                storage.add_leaf(Nibbles::unpack(slot), &alloy_rlp::encode(value));
            }
            let leaf = TrieAccount {
                nonce: account.nonce,
                balance: account.balance,
                storage_root: storage.root(),
                code_hash: account.code_hash,
            };
            let mut encoded = Vec::new();
            leaf.encode(&mut encoded);
            state.add_leaf(Nibbles::unpack(key), &encoded);
        }
        state.root()
    }

    /// Sets the change's prior values from the model, then applies it to the model the way a replica
    /// applies it; returns what it replaced.
    fn apply_to_model(&mut self, change: &mut AccountChange) -> (Address, Option<ModelAccount>) {
        let old = self.state.get(&change.address).cloned();
        change.prior = old.as_ref().and_then(|a| AccountPrior::existing(a.balance, a.nonce, a.code_hash));
        let wipe = change.storage_wiped || change.account.is_none();
        for s in &mut change.storage {
            s.prior = if wipe {
                B256::ZERO
            } else {
                old.as_ref().and_then(|a| a.storage.get(&s.slot)).copied().unwrap_or_default()
            };
        }
        match &change.account {
            None => {
                self.state.remove(&change.address);
            }
            Some(new) => {
                let code_hash = match &new.code {
                    Some(code) if code.is_empty() => KECCAK256_EMPTY,
                    Some(code) => keccak256(code),
                    None => match &old {
                        Some(a) if !change.storage_wiped => a.code_hash,
                        _ => KECCAK256_EMPTY,
                    },
                };
                let mut storage = if wipe {
                    BTreeMap::new()
                } else {
                    old.as_ref().map(|a| a.storage.clone()).unwrap_or_default()
                };
                for s in &change.storage {
                    if s.value.is_zero() {
                        storage.remove(&s.slot);
                    } else {
                        storage.insert(s.slot, s.value);
                    }
                }
                let account = ModelAccount { balance: new.balance, nonce: new.nonce, code_hash, storage };
                self.state.insert(change.address, account);
            }
        }
        (change.address, old)
    }

    fn account_change(&mut self, genesis: bool) -> AccountChange {
        let address = self.address();
        let roll = self.rng.random_range(0..100);
        if !genesis && roll < 4 {
            // Self-destruct: the account and its storage are gone.
            return AccountChange {
                address,
                storage_wiped: true,
                prior: None,
                account: None,
                storage: Vec::new(),
            };
        }
        let code_len = self.rng.random_range(1..64);
        let code = (roll < 15).then(|| self.bytes(code_len));
        let mut storage: Vec<StorageSlot> = (0..self.rng.random_range(0..6))
            .map(|_| {
                let slot = B256::from(U256::from(self.rng.random_range(0..self.opts.slots)));
                // One write in four clears its slot.
                let value = if self.rng.random_bool(0.25) {
                    B256::ZERO
                } else {
                    B256::from(U256::from(self.rng.random::<u64>()))
                };
                StorageSlot { slot, prior: B256::ZERO, value }
            })
            .collect();
        storage.reverse();
        storage.sort_by_key(|s| s.slot);
        storage.dedup_by_key(|s| s.slot);
        AccountChange {
            address,
            storage_wiped: !genesis && roll < 6,
            prior: None,
            account: Some(AccountState {
                balance: U256::from(self.rng.random::<u64>()),
                nonce: self.rng.random_range(0..1000),
                code,
            }),
            storage,
        }
    }
}

/// A stand-in header: an RLP list whose first four items are where a real header keeps its parent hash,
/// ommers hash (here a salt, so that every branch's blocks differ), beneficiary and state root (the model's:
/// replicas check it), then the block number.
pub fn stand_in_header(parent_hash: B256, salt: u64, state_root: B256, number: u64) -> Bytes {
    use alloy_rlp::Encodable;
    let mut salt_word = B256::ZERO;
    salt_word.0[24..].copy_from_slice(&salt.to_be_bytes());
    let mut body = Vec::new();
    parent_hash.encode(&mut body);
    salt_word.encode(&mut body);
    Address::ZERO.encode(&mut body);
    state_root.encode(&mut body);
    number.encode(&mut body);
    let mut out = Vec::new();
    alloy_rlp::Header { list: true, payload_length: body.len() }.encode(&mut out);
    out.extend_from_slice(&body);
    out.into()
}
