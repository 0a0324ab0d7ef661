//! Reads: where the database stands in the log, the chain it follows, and state at any block it holds.

use alloy_primitives::{keccak256, Address, Bytes, B256};
use ec_log::{BlockRef, Heartbeat};
use serde::de::DeserializeOwned;

use crate::{
    batch::Source,
    error::{Result, StoreError},
    tables::{
        AccountHistory, Accounts, BlockChanges, BlockHead, BlockHeads, BlockTransaction, BlockTxs, Canonical,
        ChainInfo, ChangeSet, Code, LegacyBlocks, Meta, MetaKey, Storage, StorageHistory, StoredAccount,
        StoredBlock, Table, Value,
    },
    Store, StoreView,
};

/// Where a database stands in its log: the last record applied and the offset of its last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub kafka_offset: i64,
    pub sequence: u64,
}

impl Position {
    /// The first Kafka offset this database still needs.
    pub fn next_offset(&self) -> i64 {
        self.kafka_offset + 1
    }
}

fn fixed<const N: usize>(key: MetaKey, bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table: Meta::NAME,
        reason: format!("{} is {} bytes, expected {N}", key.name(), bytes.len()),
    })
}

/// Every read of the store, alike on the database as it is now ([`Store`]) and on one instant of it
/// ([`StoreView`]: what an RPC request reads, so that all its reads agree).
pub trait Reads: Source {
    /// The last record applied, or `None` for an empty database.
    fn position(&self) -> Result<Option<Position>> {
        let offset = self.get::<Meta>(&MetaKey::KafkaOffset)?;
        let sequence = self.get::<Meta>(&MetaKey::Sequence)?;
        match (offset, sequence) {
            (None, None) => Ok(None),
            (Some(o), Some(s)) => Ok(Some(Position {
                kafka_offset: i64::from_be_bytes(fixed(MetaKey::KafkaOffset, &o)?),
                sequence: u64::from_be_bytes(fixed(MetaKey::Sequence, &s)?),
            })),
            _ => Err(StoreError::Corrupt {
                table: Meta::NAME,
                reason: "offset and sequence must be both present or both absent".into(),
            }),
        }
    }

    fn chain(&self) -> Result<Option<ChainInfo>> {
        match self.get::<Meta>(&MetaKey::Chain)? {
            None => Ok(None),
            Some(b) => ChainInfo::decode(&b)
                .map(Some)
                .map_err(|reason| StoreError::Corrupt { table: Meta::NAME, reason }),
        }
    }

    /// The newest canonical block, or `None` before genesis.
    fn head(&self) -> Result<Option<BlockRef>> {
        meta_postcard(self, MetaKey::Head)
    }

    fn last_heartbeat(&self) -> Result<Option<Heartbeat>> {
        meta_postcard(self, MetaKey::Heartbeat)
    }

    fn canonical_hash(&self, number: u64) -> Result<Option<B256>> {
        self.get::<Canonical>(&number)
    }

    /// A whole block: its head and every transaction with its receipt, read in one instant (on the store
    /// itself, a view is taken for it: a revert committed between the head and its transactions would
    /// otherwise look like a damaged block).
    fn block_by_hash(&self, hash: &B256) -> Result<Option<StoredBlock>> {
        if !self.is_view() {
            return self.store().view().block_by_hash(hash);
        }
        let Some(head) = self.get::<BlockHeads>(hash)? else { return self.get::<LegacyBlocks>(hash) };
        let txs = self.scan_prefix::<BlockTxs>(hash.as_slice())?.into_iter().map(|(_, tx)| tx).collect();
        let expected = head.transactions;
        match StoredBlock::from_parts(head, txs) {
            Some(block) => Ok(Some(block)),
            None => Err(StoreError::Corrupt {
                table: BlockTxs::NAME,
                reason: format!("block {hash} has {expected} transactions, the table holds another number"),
            }),
        }
    }

    /// A block without its transactions: what a timestamp or a header needs.
    fn block_head(&self, hash: &B256) -> Result<Option<BlockHead>> {
        match self.get::<BlockHeads>(hash)? {
            Some(head) => Ok(Some(head)),
            None => Ok(self.get::<LegacyBlocks>(hash)?.map(|b| b.head())),
        }
    }

    /// A block a revert took off the chain (kept as long as the undo window): `None` if this replica never
    /// held it, or no longer does.
    fn reverted_block(&self, number: u64, hash: &B256) -> Result<Option<StoredBlock>> {
        if self.store().db.cf_handle(crate::tables::RevertedBlocks::NAME).is_none() {
            return Ok(None); // a database of an older build, opened read-only
        }
        self.get::<crate::tables::RevertedBlocks>(&(number, *hash))
    }

    /// Transaction `index` of block `hash` with its receipt, read alone (`None`: no such block or index), in
    /// one instant as [`Reads::block_by_hash`].
    /// A block's receipt roots and uncle headers, if it has any (blocks before Byzantium, proof of work).
    fn block_extras(&self, hash: &B256) -> Result<Option<crate::tables::StoredExtras>> {
        // A read-only open of a database older than the table holds none.
        if self.store().db.cf_handle(crate::tables::BlockExtras::NAME).is_none() {
            return Ok(None);
        }
        self.get::<crate::tables::BlockExtras>(hash)
    }

    fn block_transaction(&self, hash: &B256, index: usize) -> Result<Option<BlockTransaction>> {
        if !self.is_view() {
            return self.store().view().block_transaction(hash, index);
        }
        let Some(head) = self.get::<BlockHeads>(hash)? else {
            return Ok(self.get::<LegacyBlocks>(hash)?.and_then(|b| b.transaction(index)));
        };
        let Some(tx) = self.get::<BlockTxs>(&(*hash, index as u64))? else { return Ok(None) };
        Ok(Some(BlockTransaction {
            number: head.number,
            hash: head.hash,
            timestamp: head.timestamp,
            header: head.header,
            index,
            tx,
        }))
    }

    /// Blocks in `from..=to` with a log emitted by `address` (from the log index, not a scan).
    fn log_blocks_by_address(&self, address: &Address, from: u64, to: u64) -> Result<Vec<u64>> {
        index_blocks::<crate::tables::LogAddresses>(self, address.as_slice(), &(*address, from), to)
    }

    /// Blocks in `from..=to` with a log carrying `topic` in any position.
    fn log_blocks_by_topic(&self, topic: &B256, from: u64, to: u64) -> Result<Vec<u64>> {
        index_blocks::<crate::tables::LogTopics>(self, topic.as_slice(), &(*topic, from), to)
    }

    /// Where a canonical transaction sits: block number and index.
    fn tx_location(&self, hash: &B256) -> Result<Option<crate::tables::TxLocation>> {
        self.get::<crate::tables::TxIndex>(hash)
    }

    fn code(&self, hash: &B256) -> Result<Option<Bytes>> {
        self.get::<Code>(hash)
    }

    /// What block `number` changed (hashed accounts and slots), while its undo entry is kept (the undo
    /// window); `None` after it was pruned.
    fn block_changes(&self, number: u64) -> Result<Option<ChangeSet>> {
        self.get::<BlockChanges>(&number)
    }

    /// Refuses a state read older than the database holds: with no history before the first block, the
    /// lookup would otherwise answer with a newer value, silently wrong.
    fn check_state_held(&self, number: u64) -> Result<()> {
        let first = self.store().first_state_block();
        if number < first {
            return Err(StoreError::StateUnavailable { number, first });
        }
        Ok(())
    }

    /// The oldest block whose history the history window kept, if it pruned any.
    fn history_floor(&self) -> Result<Option<u64>> {
        match self.get::<Meta>(&MetaKey::HistoryFloor)? {
            None => Ok(None),
            Some(b) => Ok(Some(u64::from_be_bytes(fixed(MetaKey::HistoryFloor, &b)?))),
        }
    }

    /// The block whose state the trie tables describe, if they are complete ([`crate::trie`]).
    fn trie_head(&self) -> Result<Option<crate::trie::TrieHead>> {
        meta_postcard(self, MetaKey::Trie)
    }

    /// The block whose state the state tables hold, with the state root its header commits to: the head, or
    /// before any block the imported one; `None` when the database holds no state yet.
    fn state_block(&self) -> Result<Option<(BlockRef, B256)>> {
        if let Some(head) = self.head()? {
            let corrupt = |reason: String| StoreError::Corrupt { table: "block_heads", reason };
            let block = self
                .block_head(&head.hash)?
                .ok_or_else(|| corrupt(format!("no body for the head block {}", head.number)))?;
            let root = ec_log::state_root_of_header(&block.header).map_err(|e| {
                corrupt(format!("the header of block {} has no state root: {e}", head.number))
            })?;
            return Ok(Some((head, root)));
        }
        Ok(self.imported()?.map(|i| (BlockRef { number: i.number, hash: i.hash }, i.state_root)))
    }

    /// The state `import-state` seeded this database with, if any.
    fn imported(&self) -> Result<Option<crate::tables::ImportedState>> {
        meta_postcard(self, MetaKey::Imported)
    }

    /// The account at the head.
    fn account(&self, address: &Address) -> Result<Option<StoredAccount>> {
        self.get::<Accounts>(&keccak256(address))
    }

    /// The account as it was after block `number`: the prior value recorded by the first change after
    /// `number`, or the current value when nothing changed it since.
    fn account_at(&self, address: &Address, number: u64) -> Result<Option<StoredAccount>> {
        self.account_at_key(&keccak256(address), number)
    }

    /// [`Reads::account_at`] by the hashed address the tables key it by (what a block's [`ChangeSet`] names).
    fn account_at_key(&self, key: &B256, number: u64) -> Result<Option<StoredAccount>> {
        self.check_state_held(number)?;
        let key = *key;
        // The current value: the answer at the head, and at any block no later change recorded history for.
        let current = || self.get::<Accounts>(&key);
        if let Some(found) = at_head(self, number, current)? {
            return Ok(found);
        }
        let after = number.saturating_add(1);
        let found = match self.seek_in_prefix::<AccountHistory>(key.as_slice(), &(key, after))? {
            Some(prior) => prior.0,
            None => current()?,
        };
        // Again after the lookup: a history window may have pruned what it read meanwhile.
        self.check_state_held(number)?;
        Ok(found)
    }

    /// A storage slot at the head (zero when absent).
    fn storage(&self, address: &Address, slot: &B256) -> Result<B256> {
        Ok(self.get::<Storage>(&(keccak256(address), keccak256(slot)))?.unwrap_or_default())
    }

    /// A storage slot as it was after block `number`.
    fn storage_at(&self, address: &Address, slot: &B256, number: u64) -> Result<B256> {
        self.storage_at_keys(&keccak256(address), &keccak256(slot), number)
    }

    /// [`Reads::storage_at`] by the hashed address and slot the tables key it by.
    fn storage_at_keys(&self, account_key: &B256, slot_key: &B256, number: u64) -> Result<B256> {
        self.check_state_held(number)?;
        let (account_key, slot_key) = (*account_key, *slot_key);
        // The current value: the answer at the head, and at any block no later change recorded history for.
        let current = || Ok(self.get::<Storage>(&(account_key, slot_key))?.unwrap_or_default());
        if let Some(found) = at_head(self, number, current)? {
            return Ok(found);
        }
        let prefix = [account_key.as_slice(), slot_key.as_slice()].concat();
        let after = number.saturating_add(1);
        let found = match self.seek_in_prefix::<StorageHistory>(&prefix, &(account_key, slot_key, after))? {
            Some(prior) => prior,
            None => current()?,
        };
        // Again after the lookup: a history window may have pruned what it read meanwhile.
        self.check_state_held(number)?;
        Ok(found)
    }
}

fn meta_postcard<T: DeserializeOwned>(r: &(impl Source + ?Sized), key: MetaKey) -> Result<Option<T>> {
    match r.get::<Meta>(&key)? {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { table: Meta::NAME, reason: format!("{}: {e}", key.name()) }),
    }
}

fn index_blocks<T: crate::tables::Table>(
    r: &(impl Source + ?Sized),
    prefix: &[u8],
    start: &T::Key,
    to: u64,
) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for key in r.scan_keys_from::<T>(prefix, start) {
        let key = key?;
        let n = key.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        match n {
            Some(n) if n <= to => out.push(n),
            Some(_) => break,
            None => return Err(StoreError::Corrupt { table: T::NAME, reason: "short index key".into() }),
        }
    }
    Ok(out)
}

/// The fast path for state at the head: a point read of the current table instead of a history seek.
/// `None` when `number` is not the head, or when a block was applied or reverted during the read (the
/// caller then takes the history path, which is right for any block). A view cannot see a block applied
/// meanwhile, so only the store itself reads the head again.
fn at_head<T>(r: &(impl Reads + ?Sized), number: u64, read: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let Some(head) = r.head()?.filter(|h| h.number == number) else { return Ok(None) };
    let value = read()?;
    if r.is_view() {
        return Ok(Some(value));
    }
    Ok((r.head()? == Some(head)).then_some(value))
}

impl Reads for Store {}
impl Reads for StoreView<'_> {}
