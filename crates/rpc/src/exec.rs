//! Re-execution of a stored block on the replica's own state: what the traces (`debug_trace*`, `trace_*`)
//! and `ether-cattle verify-blocks` run.
//!
//! A [`Replay`] of block N reads the state after block N-1 from the store's history, under N's own fork
//! rules (`ec-chainspec`) and the environment of N's header; it first runs the pre-block system calls
//! (EIP-4788's beacon root from Cancun, EIP-2935's parent hash from Prague), then each transaction as the
//! stored envelope and sender give it, committing each one's changes before the next. `BLOCKHASH` reads the
//! store's canonical hashes.
//!
//! **Self-check.** Every transaction's gas used must equal what its stored receipt says. A difference means
//! the re-execution is not the chain's (a state the log left out, a rule this binary gets wrong): the replay
//! stops with [`ExecError::GasMismatch`] naming the block and the transaction, and the caller answers that
//! error, never a trace of a different execution. [`MISMATCHES`] counts them for `/metrics`.

use std::{
    sync::{atomic::AtomicU64, Arc},
    time::Instant,
};

use alloy_consensus::{Header, TxEnvelope};
use alloy_eips::Decodable2718;
use alloy_evm::FromRecoveredTx;
use alloy_primitives::{Address, Bytes, B256, U256};
use ec_store::{tables::StoredBlock, Reads, StoreView};
use revm::{
    context::{result::ResultAndState, BlockEnv, CfgEnv, Context, TxEnv},
    database::CacheDB,
    database_interface::DatabaseCommit,
    handler::SystemCallCommitEvm,
    primitives::hardfork::SpecId,
    InspectEvm, Inspector, MainBuilder, MainContext,
};

use crate::evm::{self, StateAt};

/// Re-executions whose gas disagreed with a stored receipt, since the process started.
pub static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// Why a block could not be re-executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// As geth: the genesis block has no parent state to run it on.
    #[error("genesis is not traceable")]
    Genesis,
    #[error("block {number}: the state before it is not held by this replica ({reason})")]
    StateUnavailable { number: u64, reason: String },
    #[error("block {number}: {reason}")]
    Block { number: u64, reason: String },
    #[error("block {number}, transaction {index} ({hash}): {reason}")]
    Transaction { number: u64, index: usize, hash: B256, reason: String },
    #[error(
        "block {number}, transaction {index} ({hash}): re-execution used {executed} gas where the receipt \
         says {recorded}; the replica will not answer a trace it cannot vouch for"
    )]
    GasMismatch { number: u64, index: usize, hash: B256, executed: u64, recorded: u64 },
    #[error("execution aborted (timeout = {0:?})")]
    Timeout(std::time::Duration),
}

/// One transaction's execution, not yet committed: its result with the state it changed, and its place.
pub struct Executed {
    pub index: usize,
    pub hash: B256,
    /// Its result; `result.result.tx_gas_used()` equals its receipt's gas (checked).
    pub result: ResultAndState,
    /// The environment it ran in (what the tracers read its gas limit and caller from).
    pub tx_env: TxEnv,
}

/// A block being re-executed, transaction by transaction.
pub struct Replay<'a> {
    pub block: Arc<StoredBlock>,
    pub header: Header,
    pub spec_id: SpecId,
    block_env: BlockEnv,
    cfg: CfgEnv,
    /// The state after N-1 with every transaction executed so far committed on top.
    db: CacheDB<StateAt<'a>>,
    /// The index of the next transaction.
    next: usize,
    /// The logs the transactions before the next one emitted (geth numbers logs in the block).
    logs_before_next: u64,
    /// A deadline and the timeout it came from, checked between transactions.
    deadline: Option<(Instant, std::time::Duration)>,
}

impl<'a> Replay<'a> {
    /// Block `block` on the state before it, after its pre-block system calls.
    pub fn start(
        view: &'a StoreView<'a>,
        spec: &ec_chainspec::ChainSpec,
        block: Arc<StoredBlock>,
    ) -> Result<Self, ExecError> {
        let number = block.number;
        let Some(parent) = number.checked_sub(1) else { return Err(ExecError::Genesis) };
        // A checkpoint cluster before its first block, a history window that pruned it: ask once, up front.
        view.check_state_held(parent)
            .map_err(|e| ExecError::StateUnavailable { number, reason: e.to_string() })?;
        let header = crate::fees::header(&block).map_err(|reason| ExecError::Block { number, reason })?;
        let mut block_env = evm::header_block_env(&header);
        let spec_id = evm::fork_rules(&mut block_env, &header, spec)
            .map_err(|reason| ExecError::Block { number, reason })?;
        let mut cfg = CfgEnv::new_with_spec(spec_id);
        cfg.chain_id = spec.chain_id();
        let db = CacheDB::new(StateAt { store: view, number: parent });
        let mut replay = Replay {
            block,
            header,
            spec_id,
            block_env,
            cfg,
            db,
            next: 0,
            logs_before_next: 0,
            deadline: None,
        };
        replay.system_calls()?;
        Ok(replay)
    }

    /// Stops the replay between transactions at `deadline` (inside one, the caller's inspector does).
    pub fn set_deadline(&mut self, deadline: Instant, timeout: std::time::Duration) {
        self.deadline = Some((deadline, timeout));
    }

    /// The state as it is before the next transaction (what a prestate trace reads the pre-state from).
    pub fn db(&self) -> &CacheDB<StateAt<'a>> {
        &self.db
    }

    pub fn block_env(&self) -> &BlockEnv {
        &self.block_env
    }

    /// The state as it is before the next transaction, to run something else on it (`debug_traceCall`'s
    /// `txIndex`).
    pub fn into_db(self) -> CacheDB<StateAt<'a>> {
        self.db
    }

    /// Where the next transaction (the one [`Replay::execute`] ran, before its commit) sits in the block, as
    /// its trace names it.
    pub fn place(&self) -> crate::tracers::Place {
        let tx_hash = self.block.transactions.get(self.next).map(|t| t.hash());
        crate::tracers::Place {
            block_hash: Some(self.block.hash),
            block_number: self.block.number,
            tx_hash,
            tx_index: self.next as u64,
            logs_before: self.logs_before_next,
            spec_id: self.spec_id,
            chain_id: self.cfg.chain_id,
        }
    }

    /// The number of transactions in the block.
    pub fn len(&self) -> usize {
        self.block.transactions.len()
    }

    /// The index of the next transaction to run.
    pub fn next_index(&self) -> usize {
        self.next
    }

    pub fn is_empty(&self) -> bool {
        self.block.transactions.is_empty()
    }

    /// EIP-4788 (from Cancun: the parent beacon block root into its ring buffer) and EIP-2935 (from Prague:
    /// the parent's hash into the history contract), committed, untraced (as geth traces blocks).
    fn system_calls(&mut self) -> Result<(), ExecError> {
        let mut calls: Vec<(Address, Bytes)> = Vec::new();
        if self.spec_id.is_enabled_in(SpecId::CANCUN) {
            if let Some(root) = self.header.parent_beacon_block_root {
                calls.push((alloy_eips::eip4788::BEACON_ROOTS_ADDRESS, root.0.into()));
            }
        }
        if self.spec_id.is_enabled_in(SpecId::PRAGUE) {
            calls.push((alloy_eips::eip2935::HISTORY_STORAGE_ADDRESS, self.header.parent_hash.0.into()));
        }
        for (address, data) in calls {
            self.system_call(address, data)?;
        }
        Ok(())
    }

    /// What the block does after its transactions: the withdrawals' credits (from Shanghai), the miner's
    /// reward (before the merge), and the EIP-7002 and EIP-7251 request queues' system calls (from Prague).
    /// Run after the last transaction; the state is then the block's own post-state.
    pub fn finish(&mut self) -> Result<(), ExecError> {
        let number = self.block.number;
        if self.next != self.len() {
            return Err(ExecError::Block {
                number,
                reason: format!("finish after {} of {} transactions", self.next, self.len()),
            });
        }
        let db_error = |e: evm::DbError| ExecError::Block { number, reason: e.0 };
        let credit = |db: &mut CacheDB<StateAt<'a>>, address, amount| {
            evm::credit(db, address, amount).map_err(db_error)
        };
        for w in self.block.withdrawals.iter().flatten() {
            credit(&mut self.db, w.address, U256::from(w.amount_gwei) * U256::from(1_000_000_000u64))?;
        }
        if let Some(reward) = crate::parity_trace::base_block_reward(self.spec_id) {
            if self.header.ommers_hash != alloy_consensus::EMPTY_OMMER_ROOT_HASH {
                return Err(ExecError::Block {
                    number,
                    reason: "the block has uncles, whose headers the log does not record: its rewards cannot be re-executed".into(),
                });
            }
            credit(&mut self.db, self.header.beneficiary, reward)?;
        }
        if self.spec_id.is_enabled_in(SpecId::PRAGUE) {
            for address in [
                alloy_eips::eip7002::WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
                alloy_eips::eip7251::CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
            ] {
                self.system_call(address, Bytes::new())?;
            }
        }
        Ok(())
    }

    /// One system call (from the system address, outside any transaction), committed.
    fn system_call(&mut self, address: Address, data: Bytes) -> Result<(), ExecError> {
        let number = self.block.number;
        let mut evm = Context::mainnet()
            .with_db(&mut self.db)
            .with_block(self.block_env.clone())
            .with_cfg(self.cfg.clone())
            .build_mainnet();
        evm.system_call_commit(address, data)
            .map_err(|e| ExecError::Block { number, reason: format!("system call to {address}: {e:?}") })?;
        Ok(())
    }

    /// The next transaction's environment, as its stored envelope and sender give it.
    fn next_tx(&self) -> Result<(TxEnv, B256), ExecError> {
        let (number, index) = (self.block.number, self.next);
        let stored = &self.block.transactions[index];
        let hash = stored.hash();
        let envelope = TxEnvelope::decode_2718(&mut &stored.encoded[..]).map_err(|e| {
            ExecError::Transaction { number, index, hash, reason: format!("stored envelope: {e}") }
        })?;
        Ok((TxEnv::from_recovered_tx(&envelope, stored.sender), hash))
    }

    /// Runs the next transaction with `inspector`, without committing it: the caller reads the state before
    /// it ([`Replay::db`]) to build its trace, then calls [`Replay::commit`]. Checks its gas against the
    /// receipt.
    pub fn execute<'r, I>(&'r mut self, inspector: I) -> Result<(Executed, I), ExecError>
    where
        I: Inspector<Context<BlockEnv, TxEnv, CfgEnv, &'r mut CacheDB<StateAt<'a>>>>,
    {
        let (number, index) = (self.block.number, self.next);
        if index >= self.len() {
            return Err(ExecError::Block { number, reason: format!("no transaction {index}") });
        }
        if let Some((deadline, timeout)) = self.deadline {
            if Instant::now() >= deadline {
                return Err(ExecError::Timeout(timeout));
            }
        }
        let (tx, hash) = self.next_tx()?;
        let tx_env = tx.clone();
        let recorded = self.receipt_gas(index);
        // The database stays borrowed by the EVM for the rest of this call: everything else is read above.
        let (result, inspector) = {
            let mut evm = Context::mainnet()
                .with_db(&mut self.db)
                .with_block(self.block_env.clone())
                .with_cfg(self.cfg.clone())
                .build_mainnet_with_inspector(inspector);
            (evm.inspect_tx(tx), evm.inspector)
        };
        let result =
            result.map_err(|e| ExecError::Transaction { number, index, hash, reason: format!("{e:?}") })?;
        let gas_used = result.result.tx_gas_used();
        if gas_used != recorded {
            MISMATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(number, index, %hash, executed = gas_used, recorded, "re-execution disagrees with the receipt");
            return Err(ExecError::GasMismatch { number, index, hash, executed: gas_used, recorded });
        }
        Ok((Executed { index, hash, result, tx_env }, inspector))
    }

    /// Commits what [`Replay::execute`] returned; the next transaction runs on top of it.
    pub fn commit(&mut self, executed: Executed) {
        self.db.commit(executed.result.state);
        self.logs_before_next += self.block.receipts.get(self.next).map_or(0, |r| r.logs.len() as u64);
        self.next += 1;
    }

    /// Runs and commits every transaction before `index`, untraced.
    pub fn skip_to(&mut self, index: usize) -> Result<(), ExecError> {
        while self.next < index {
            let (executed, _) = self.execute(revm::inspector::NoOpInspector)?;
            self.commit(executed);
        }
        Ok(())
    }

    /// The gas transaction `index` used, by its stored receipt (the difference of cumulative gas).
    fn receipt_gas(&self, index: usize) -> u64 {
        let cumulative = |i: usize| self.block.receipts.get(i).map_or(0, |r| r.cumulative_gas_used);
        let before = if index == 0 { 0 } else { cumulative(index - 1) };
        cumulative(index).saturating_sub(before)
    }
}
