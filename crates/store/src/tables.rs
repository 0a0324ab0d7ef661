//! Typed tables: one RocksDB column family each, with one key type and one value type.
//!
//! Keys are fixed-width big-endian byte strings so that RocksDB's byte order is the logical order
//! (block numbers ascend, an account's slots sit together, an account's history is sorted by block).
//! Values are postcard, or raw bytes where the value already is bytes.
//!
//! State is keyed by hashes, as geth's snapshot and reth's hashed tables are: an account by
//! `keccak256(address)`, a slot by `(keccak256(address), keccak256(slot))`. A state dump of a node that kept
//! no address preimages (every snap-synced geth) can then seed a replica, and the tables iterate in the
//! state trie's order, so the state root is computed by one pass over them. The RPC hashes what it is asked
//! for; nothing in the store needs a preimage.

use alloy_primitives::{Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};

/// A column family with a typed key and value.
pub trait Table {
    const NAME: &'static str;
    /// Position in [`ALL_TABLES`].
    const INDEX: usize = table_index(Self::NAME);
    type Key: Key;
    type Value: Value;
}

/// Where `name` is in [`ALL_TABLES`] (at compile time: a table missing from the list fails the build).
const fn table_index(name: &str) -> usize {
    let mut i = 0;
    while i < ALL_TABLES.len() {
        if const_eq(ALL_TABLES[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("a table missing from ALL_TABLES")
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub trait Key: Sized {
    fn encode(&self) -> Vec<u8>;
}

pub trait Value: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

macro_rules! table {
    ($(#[$doc:meta])* $name:ident, $cf:literal, $key:ty => $value:ty) => {
        $(#[$doc])*
        pub struct $name;
        impl Table for $name {
            const NAME: &'static str = $cf;
            type Key = $key;
            type Value = $value;
        }
    };
}

table!(
    /// Replica bookkeeping: position in the log, chain identity, head, last heartbeat.
    Meta, "meta", MetaKey => Bytes
);
table!(
    /// Canonical chain: block number to block hash.
    Canonical, "canonical", u64 => B256
);
table!(
    /// A block without its transactions, by hash: header, withdrawals, how many transactions it has (the
    /// state change lives in the state tables, the transactions in [`BlockTxs`]).
    BlockHeads, "block_heads", B256 => BlockHead
);
table!(
    /// Each transaction of a block with its receipt, by `(block hash, index)`: one transaction or receipt by
    /// hash reads its own entry, not the whole block (a mainnet block's body is a few hundred kilobytes).
    BlockTxs, "block_txs", (B256, u64) => BlockTx
);
table!(
    /// Whole block bodies by hash, as layouts 1 and 2 stored them ([`StoredBlock`]). Layout 3 writes
    /// [`BlockHeads`] and [`BlockTxs`] instead; the blocks a database of layout 2 already held stay here and
    /// are read from here (so an upgrade needs no migration), and deleted from here when reverted.
    LegacyBlocks, "blocks", B256 => StoredBlock
);
table!(
    /// Current (head) account state, by `keccak256(address)`.
    Accounts, "accounts", B256 => StoredAccount
);
table!(
    /// Current (head) storage by `(keccak256(address), keccak256(slot))`; only non-zero slots are present.
    Storage, "storage", (B256, B256) => B256
);
table!(
    /// Contract code by its keccak256 hash.
    Code, "code", B256 => Bytes
);
table!(
    /// The account as it was *before* block N changed it (`None`: it did not exist). Serves reverts and
    /// state-at-block reads: the value at block M is the first entry after M, or the current value.
    /// Keyed by `(keccak256(address), N)`.
    AccountHistory, "account_history", (B256, u64) => PriorAccount
);
table!(
    /// A slot's value before block N changed it (zero: absent), by `(keccak256(address), keccak256(slot), N)`.
    /// Same scheme as [`AccountHistory`].
    StorageHistory, "storage_history", (B256, B256, u64) => B256
);
table!(
    /// The undo index of block N: which accounts, slots and code blobs it changed. Pruned beyond the undo
    /// window.
    BlockChanges, "block_changes", u64 => ChangeSet
);
table!(
    /// Transaction hash to its place in the canonical chain.
    TxIndex, "tx_index", B256 => TxLocation
);

table!(
    /// Log index by emitting address: (address, block) for every block with a log from that address.
    LogAddresses, "log_addresses", (Address, u64) => Bytes
);
table!(
    /// Log index by topic (any position): (topic, block) for every block with a log carrying that topic.
    LogTopics, "log_topics", (B256, u64) => Bytes
);
table!(
    /// The account trie's stored branch nodes, by nibble path (see [`crate::trie`]).
    AccountTrie, "account_trie", crate::trie::TriePath => crate::trie::TrieNode
);
table!(
    /// Each storage trie's stored branch nodes, by `(keccak256(address), nibble path)`.
    StorageTrie, "storage_trie", (B256, crate::trie::TriePath) => crate::trie::TrieNode
);
table!(
    /// Each account's storage root, by `keccak256(address)`; absent for an empty storage.
    StorageRoots, "storage_roots", B256 => B256
);

table!(
    /// Blocks a revert took off the chain, by `(number, hash)`, as they were: a polling log filter whose
    /// cursor sits on one walks back from it to the canonical chain and reports its logs as removed. Kept as
    /// long as the undo window (pruned with the history of the canonical block of the same number).
    RevertedBlocks, "reverted_blocks", (u64, B256) => StoredBlock
);

table!(
    /// What a block carries beyond its body, by block hash, for the blocks that have any (log format 6): its
    /// receipts' intermediate state roots before Byzantium, and a proof-of-work block's uncle headers.
    BlockExtras, "block_extras", B256 => StoredExtras
);

/// A block's [`BlockExtras`] entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredExtras {
    /// One per receipt, in order (receipts before Byzantium held these instead of a status).
    pub receipt_roots: Vec<B256>,
    /// The uncle headers, RLP, in order.
    pub ommers: Vec<Bytes>,
}

/// The tables of the state trie: derived from the state tables, built when missing.
pub const TRIE_TABLES: &[&str] = &[AccountTrie::NAME, StorageTrie::NAME, StorageRoots::NAME];

/// Tables newer than layout 3 that a database may lack (it is then read without them, and they are created at
/// the next writable open): the trie tables, the reverted blocks and the blocks' extras.
pub const OPTIONAL_TABLES: &[&str] =
    &[AccountTrie::NAME, StorageTrie::NAME, StorageRoots::NAME, RevertedBlocks::NAME, BlockExtras::NAME];

/// Every table, in the fixed order the checksum walks them.
pub const ALL_TABLES: &[&str] = &[
    Meta::NAME,
    Canonical::NAME,
    LegacyBlocks::NAME,
    BlockHeads::NAME,
    BlockTxs::NAME,
    Accounts::NAME,
    Storage::NAME,
    Code::NAME,
    AccountHistory::NAME,
    StorageHistory::NAME,
    BlockChanges::NAME,
    TxIndex::NAME,
    LogAddresses::NAME,
    LogTopics::NAME,
    AccountTrie::NAME,
    StorageTrie::NAME,
    StorageRoots::NAME,
    RevertedBlocks::NAME,
    BlockExtras::NAME,
];

/// The keys of the [`Meta`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Kafka offset of the last frame of the last record applied (i64, big-endian).
    KafkaOffset,
    /// Sequence number of the last record applied (u64, big-endian).
    Sequence,
    /// CRC-32C of the last record applied (u32, big-endian), to recognise a conflicting duplicate.
    SequenceCrc,
    /// [`ChainInfo`], written by the genesis record.
    Chain,
    /// [`alloy_primitives::B256`] hash and number of the head block, as an `ec_log::BlockRef`.
    Head,
    /// The last heartbeat, as an `ec_log::Heartbeat`.
    Heartbeat,
    /// The undo window (u64, big-endian) the database was last opened with: local configuration, not log
    /// content (left out of the checksum), kept so that a change across restarts is seen and handled.
    UndoWindow,
    /// [`ImportedState`]: the block whose state `ether-cattle import-state` wrote, checked against its state
    /// root. Present before the topic's checkpoint record is applied.
    Imported,
    /// The oldest block whose history the history window kept (u64, big-endian); absent when nothing was
    /// pruned. Local configuration like the undo window: left out of the checksum.
    HistoryFloor,
    /// The database layout version (u32, big-endian): see `LAYOUT_VERSION` in the crate root.
    Layout,
    /// [`crate::trie::TrieHead`]: the block whose state the trie tables describe. Absent while they do not
    /// describe the head's state (never built, or blocks were applied with the trie off). Named `trie_v2`
    /// since stored nodes keep their leaf children's hashes: an older build's trie is rebuilt once.
    Trie,
    /// The older builds' [`MetaKey::Trie`] (nodes without leaf hashes): deleted when the trie is rebuilt.
    LegacyTrie,
    /// Present (the reason, UTF-8) when this chain's headers do not commit to its state, found at genesis:
    /// roots are computed and kept, never compared (see `Store::check_genesis_root`).
    RootsUnchecked,
    /// Present (empty) from the first write of `import-state` on: the state tables are an import's, finished
    /// only once [`MetaKey::Imported`] is there too. A genesis record is refused on such a database (a
    /// half-finished import must never become a chain's state). Local: left out of the checksum.
    ImportStarted,
}

impl MetaKey {
    pub fn name(self) -> &'static str {
        match self {
            MetaKey::KafkaOffset => "kafka_offset",
            MetaKey::Sequence => "sequence",
            MetaKey::SequenceCrc => "sequence_crc",
            MetaKey::Chain => "chain",
            MetaKey::Head => "head",
            MetaKey::Heartbeat => "heartbeat",
            MetaKey::UndoWindow => "undo_window",
            MetaKey::Imported => "imported",
            MetaKey::HistoryFloor => "history_floor",
            MetaKey::Layout => "layout",
            MetaKey::Trie => "trie_v2",
            MetaKey::LegacyTrie => "trie",
            MetaKey::RootsUnchecked => "roots_unchecked",
            MetaKey::ImportStarted => "import_started",
        }
    }
}

impl Key for MetaKey {
    fn encode(&self) -> Vec<u8> {
        self.name().as_bytes().to_vec()
    }
}

impl Key for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
}

impl Key for B256 {
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Key for Address {
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Key for (B256, B256) {
    fn encode(&self) -> Vec<u8> {
        [self.0.as_slice(), self.1.as_slice()].concat()
    }
}

impl Key for (Address, u64) {
    fn encode(&self) -> Vec<u8> {
        [self.0.as_slice(), &self.1.to_be_bytes()].concat()
    }
}

impl Key for (u64, B256) {
    fn encode(&self) -> Vec<u8> {
        [&self.0.to_be_bytes()[..], self.1.as_slice()].concat()
    }
}

impl Key for (B256, u64) {
    fn encode(&self) -> Vec<u8> {
        [self.0.as_slice(), &self.1.to_be_bytes()].concat()
    }
}

impl Key for (B256, B256, u64) {
    fn encode(&self) -> Vec<u8> {
        [self.0.as_slice(), self.1.as_slice(), &self.2.to_be_bytes()].concat()
    }
}

impl Value for B256 {
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        B256::try_from(bytes).map_err(|_| format!("expected 32 bytes, found {}", bytes.len()))
    }
}

impl Value for Bytes {
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(Bytes::copy_from_slice(bytes))
    }
}

macro_rules! postcard_value {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            fn encode(&self) -> Vec<u8> {
                // Serialising these plain structs into a Vec cannot fail.
                postcard::to_stdvec(self).unwrap_or_default()
            }
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                postcard::from_bytes(bytes).map_err(|e| e.to_string())
            }
        }
    )*};
}

postcard_value!(
    StoredAccount,
    PriorAccount,
    StoredBlock,
    BlockHead,
    BlockTx,
    ChangeSet,
    TxLocation,
    ChainInfo,
    ImportedState,
    StoredExtras,
    crate::trie::TrieHead
);

/// An account at the head. Code is stored once, by hash, in [`Code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    pub balance: U256,
    pub nonce: u64,
    pub code_hash: B256,
}

/// What an account was before a block changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorAccount(pub Option<StoredAccount>);

/// A block without its state change: everything needed to serve blocks, transactions and receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub header: Bytes,
    pub transactions: Vec<ec_log::Transaction>,
    pub receipts: Vec<ec_log::Receipt>,
    pub withdrawals: Option<Vec<ec_log::Withdrawal>>,
}

impl StoredBlock {
    /// The block without its transactions and receipts, as [`BlockHeads`] stores it.
    pub fn head(&self) -> BlockHead {
        BlockHead {
            number: self.number,
            hash: self.hash,
            parent_hash: self.parent_hash,
            timestamp: self.timestamp,
            header: self.header.clone(),
            withdrawals: self.withdrawals.clone(),
            transactions: self.transactions.len() as u64,
        }
    }

    /// Transaction `index` with its receipt and place, as [`BlockTxs`] stores it; `None` past the last.
    pub fn transaction(&self, index: usize) -> Option<BlockTransaction> {
        let (transaction, receipt) = (self.transactions.get(index)?, self.receipts.get(index)?);
        let first_log_index = self.receipts.iter().take(index).map(|r| r.logs.len() as u64).sum();
        Some(BlockTransaction {
            number: self.number,
            hash: self.hash,
            timestamp: self.timestamp,
            header: self.header.clone(),
            index,
            tx: BlockTx { transaction: transaction.clone(), receipt: receipt.clone(), first_log_index },
        })
    }

    /// The block from its head and its transactions in order; `None` unless there are as many as the head
    /// says.
    pub fn from_parts(head: BlockHead, txs: Vec<BlockTx>) -> Option<StoredBlock> {
        if txs.len() as u64 != head.transactions {
            return None;
        }
        let (transactions, receipts) = txs.into_iter().map(|t| (t.transaction, t.receipt)).unzip();
        Some(StoredBlock {
            number: head.number,
            hash: head.hash,
            parent_hash: head.parent_hash,
            timestamp: head.timestamp,
            header: head.header,
            transactions,
            receipts,
            withdrawals: head.withdrawals,
        })
    }
}

/// A block without its transactions and receipts ([`BlockHeads`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHead {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub header: Bytes,
    pub withdrawals: Option<Vec<ec_log::Withdrawal>>,
    /// How many entries the block has in [`BlockTxs`].
    pub transactions: u64,
}

/// One transaction of a block with its receipt ([`BlockTxs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTx {
    pub transaction: ec_log::Transaction,
    pub receipt: ec_log::Receipt,
    /// The block-wide index of the receipt's first log: the logs of the transactions before it.
    pub first_log_index: u64,
}

/// One transaction with what its RPC answers need of its block: the block's identity and header (the base
/// fee), its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTransaction {
    pub number: u64,
    pub hash: B256,
    pub timestamp: u64,
    pub header: Bytes,
    pub index: usize,
    pub tx: BlockTx,
}

/// What one block changed, so a revert knows which history entries to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Each changed account (hashed address) with every slot (hashed) whose value changed (written or
    /// wiped), sorted.
    pub accounts: Vec<(B256, Vec<B256>)>,
    /// Code blobs this block added to [`Code`] (absent before it).
    pub new_code: Vec<B256>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    pub block_number: u64,
    pub index: u32,
}

/// The chain this database follows, fixed by its genesis record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub cluster_id: String,
    pub chain_id: u64,
    pub genesis_hash: B256,
    pub genesis_timestamp: u64,
    /// The chain's rules, as its genesis record named them (resolved by `ec-chainspec`).
    pub spec: ec_log::ChainSpecSource,
    /// The block the cluster started at: 0 from a genesis record, N from a checkpoint. Nothing older is held
    /// (no bodies, no state; `earliest` is this block).
    pub first_block: u64,
}

/// The state a database was seeded with by `ether-cattle import-state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedState {
    pub number: u64,
    pub hash: B256,
    pub state_root: B256,
}
