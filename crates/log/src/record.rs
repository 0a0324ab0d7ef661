//! The logical content of the log: what a record *means*, independent of how it is framed.
//!
//! Field order matters: postcard encodes struct fields in declaration order, so reordering, inserting or
//! removing a field changes the format and must bump [`crate::FORMAT_VERSION`]. The golden vectors fail if
//! that is forgotten.

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};

/// What the frame header says about a record, before its payload is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: u8,
    pub kind: RecordKind,
    /// The cluster this log belongs to. A replica refuses records of another cluster.
    pub cluster_id: String,
    /// Grows by exactly one per record (not per frame), starting at 0 with the genesis record.
    pub sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    Genesis = 1,
    Block = 2,
    Revert = 3,
    Heartbeat = 4,
    Checkpoint = 5,
}

impl RecordKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Genesis,
            2 => Self::Block,
            3 => Self::Revert,
            4 => Self::Heartbeat,
            5 => Self::Checkpoint,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Genesis => "genesis",
            Self::Block => "block",
            Self::Revert => "revert",
            Self::Heartbeat => "heartbeat",
            Self::Checkpoint => "checkpoint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Genesis(Genesis),
    Block(Block),
    Revert(Revert),
    Heartbeat(Heartbeat),
    Checkpoint(Checkpoint),
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Genesis(_) => RecordKind::Genesis,
            Record::Block(_) => RecordKind::Block,
            Record::Revert(_) => RecordKind::Revert,
            Record::Heartbeat(_) => RecordKind::Heartbeat,
            Record::Checkpoint(_) => RecordKind::Checkpoint,
        }
    }
}

/// The first record of every cluster: block 0 and the complete initial state (its `state` lists every
/// allocated account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: u64,
    /// The chain's rules (fork schedule, blob schedule): replicas run every block under them.
    pub spec: ChainSpecSource,
    pub block: Block,
}

/// The first record of a cluster that starts at block N > 0 of a synced node, instead of [`Genesis`].
///
/// It carries block N without its state: the state at N is too large for a record (mainnet's is hundreds of
/// gigabytes) and reaches replicas as a database built by `ether-cattle import-state` and verified against
/// the header's state root. A replica applies a checkpoint only onto a database imported at the same block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain_id: u64,
    /// The chain's rules, as in [`Genesis`].
    pub spec: ChainSpecSource,
    /// The hash and timestamp of the chain's block 0 (the fork id and `eth_config` are computed from them).
    pub genesis_hash: B256,
    pub genesis_timestamp: u64,
    /// Block N with its transactions, receipts and withdrawals; `state` is empty.
    pub block: Block,
    /// The hashes of the blocks before N, oldest first, ending with N-1: 256 of them (fewer when N < 256),
    /// for the EVM's `BLOCKHASH`.
    pub ancestors: Vec<B256>,
}

impl Checkpoint {
    /// The state root of block N, from its header (the imported state must hash to it).
    pub fn state_root(&self) -> Result<B256, alloy_rlp::Error> {
        state_root_of_header(&self.block.header)
    }
}

/// The state root field of an RLP-encoded header: its fourth item (parent hash, ommers hash, beneficiary,
/// state root, ...), read without decoding the rest.
pub fn state_root_of_header(mut header: &[u8]) -> Result<B256, alloy_rlp::Error> {
    use alloy_rlp::Decodable;
    let list = alloy_rlp::Header::decode(&mut header)?;
    if !list.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    let _parent = B256::decode(&mut header)?;
    let _ommers = B256::decode(&mut header)?;
    let _beneficiary = Address::decode(&mut header)?;
    B256::decode(&mut header)
}

/// Where a topic's chain takes its rules from (resolved by the `ec-chainspec` crate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainSpecSource {
    /// A network whose schedule the binary carries: `mainnet`, `sepolia`, `holesky` or `hoodi`.
    Named(String),
    /// The geth-style `config` object of a genesis file, as JSON (fork blocks and times, blob schedule).
    Config(String),
}

/// The complete logical change of one canonical block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub number: u64,
    /// `keccak256(header)`; checked on apply.
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    /// The RLP-encoded header exactly as the execution client hashes it.
    pub header: Bytes,
    pub transactions: Vec<Transaction>,
    /// One per transaction, same order.
    pub receipts: Vec<Receipt>,
    /// `None` before Shanghai, `Some` (possibly empty) after.
    pub withdrawals: Option<Vec<Withdrawal>>,
    /// Post-block state of every account the block touched, sorted by address, each address once.
    pub state: Vec<AccountChange>,
    /// Before Byzantium, receipts held the state root after their transaction instead of a status: those
    /// roots, one per receipt, in order; empty from Byzantium on. (Format 6.)
    pub receipt_roots: Vec<B256>,
    /// Proof of work: the block's uncle headers (RLP, each hashing to its entry of the header's ommers list),
    /// in order; empty after the merge. (Format 6.)
    pub ommers: Vec<Bytes>,
}

impl Block {
    /// Whether `hash` really is the hash of `header`.
    pub fn hash_matches_header(&self) -> bool {
        keccak256(&self.header) == self.hash
    }
}

/// A transaction as its EIP-2718 envelope, with the sender the publisher already recovered (so replicas
/// never pay for signature recovery when serving).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub sender: Address,
    pub encoded: Bytes,
}

impl Transaction {
    pub fn hash(&self) -> B256 {
        keccak256(&self.encoded)
    }
}

/// The receipt fields a node reports that are not derivable from the transaction and header alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub success: bool,
    pub cumulative_gas_used: u64,
    pub gas_used: u64,
    pub effective_gas_price: u128,
    pub blob_gas_used: Option<u64>,
    pub blob_gas_price: Option<u128>,
    pub contract_address: Option<Address>,
    pub logs: Vec<Log>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub index: u64,
    pub validator_index: u64,
    pub address: Address,
    pub amount_gwei: u64,
}

/// One account's change in one block.
///
/// Order of application: if `storage_wiped`, every slot the account held before the block is dropped; then
/// `account` replaces the account (or deletes it when `None`); then `storage` is written.
///
/// Every change carries the values it replaces (`prior`, and each slot's `prior`): a replica builds its
/// history and undo entries from them without reading its own database, and can compare them with its own
/// values to catch a publisher or a replica that has gone wrong (`--verify-priors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountChange {
    pub address: Address,
    /// The account was destroyed during the block (and possibly re-created): its old storage is gone.
    pub storage_wiped: bool,
    /// The account before the block, or `None` when it did not exist (an empty account counts as absent,
    /// as it does after EIP-161). Always `None` in a genesis record.
    pub prior: Option<AccountPrior>,
    /// Post-block account, or `None` when the account does not exist after the block.
    pub account: Option<AccountState>,
    /// Post-block values of written slots, sorted by slot, each slot once. Zero clears the slot.
    pub storage: Vec<StorageSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub balance: U256,
    pub nonce: u64,
    /// New code, or `None` when the code did not change (a new account without code has none).
    pub code: Option<Bytes>,
}

/// An account's fields before a block. The code is named by its hash (a replica already holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPrior {
    pub balance: U256,
    pub nonce: u64,
    /// `keccak256` of the code; `KECCAK256_EMPTY` for an account without code.
    pub code_hash: B256,
}

impl AccountPrior {
    /// `None` for an account that does not exist or is empty (no balance, nonce or code): the two are the
    /// same state after EIP-161, and clients report a missing account either way.
    pub fn existing(balance: U256, nonce: u64, code_hash: B256) -> Option<Self> {
        let no_code = code_hash == alloy_primitives::KECCAK256_EMPTY || code_hash.is_zero();
        if balance.is_zero() && nonce == 0 && no_code {
            return None;
        }
        let code_hash = if no_code { alloy_primitives::KECCAK256_EMPTY } else { code_hash };
        Some(Self { balance, nonce, code_hash })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSlot {
    pub slot: B256,
    /// The slot's value before the block (zero when unset). In an account with `storage_wiped` it is zero
    /// and carries no meaning: the replica drops the account's old storage, which it holds itself.
    pub prior: B256,
    pub value: B256,
}

/// Undo the newest block (reorgs). Names the block so a replica can check it undoes the right one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revert {
    pub number: u64,
    pub hash: B256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
}

/// Written at a fixed interval even when no block arrives, so replicas can tell "no new block" from
/// "publisher gone", and a publisher in trouble from one with nothing to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Publisher wall clock, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub head: BlockRef,
    pub safe: Option<BlockRef>,
    pub finalized: Option<BlockRef>,
    /// The client's newest block as the publisher last saw it; `None` before the client first answered.
    pub client_head: Option<ClientHead>,
    /// Whether the publisher is following the client, and if not, why.
    pub state: PublisherState,
    /// The deepest reorg the publisher follows (`--reorg-window`): a replica whose undo window is smaller
    /// could not apply the reverts of such a reorg, and refuses to start.
    pub reorg_window: u64,
}

/// A block of the client's chain, by number and header timestamp (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHead {
    pub number: u64,
    pub timestamp: u64,
}

/// The publisher's own health, as it reports it in every heartbeat. Replicas leave the balancer when it is
/// not `Following` for longer than their configured grace (see the replica's readiness policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublisherState {
    /// Publishing every canonical block as the client reports it.
    Following,
    /// The client has not answered since `since_ms` (Unix epoch milliseconds).
    ClientUnreachable { since_ms: u64, error: String },
    /// Block `number` has failed to publish since `since_ms`; the publisher keeps retrying.
    Stuck { number: u64, since_ms: u64, error: String },
    /// The publisher stopped on an error retrying cannot fix (an undecodable block, a fork this build does
    /// not implement, a reorg deeper than its window): an operator must act. The last heartbeat it writes.
    Stopped { error: String },
}

impl PublisherState {
    /// One line for logs and the readiness body.
    pub fn describe(&self) -> String {
        match self {
            PublisherState::Following => "following".into(),
            PublisherState::ClientUnreachable { error, .. } => format!("client unreachable: {error}"),
            PublisherState::Stuck { number, error, .. } => format!("stuck on block {number}: {error}"),
            PublisherState::Stopped { error } => format!("stopped: {error}"),
        }
    }

    /// A number for the `/metrics` gauge: 0 following, 1 client unreachable, 2 stuck, 3 stopped.
    pub fn code(&self) -> u8 {
        match self {
            PublisherState::Following => 0,
            PublisherState::ClientUnreachable { .. } => 1,
            PublisherState::Stuck { .. } => 2,
            PublisherState::Stopped { .. } => 3,
        }
    }

    /// Since when (Unix epoch milliseconds) the trouble lasts; `None` when following or stopped.
    pub fn since_ms(&self) -> Option<u64> {
        match self {
            PublisherState::ClientUnreachable { since_ms, .. } | PublisherState::Stuck { since_ms, .. } => {
                Some(*since_ms)
            }
            PublisherState::Following | PublisherState::Stopped { .. } => None,
        }
    }
}
