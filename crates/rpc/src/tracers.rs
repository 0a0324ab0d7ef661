//! Which inspectors a `debug_trace*` request runs, and how their answers become geth's.
//!
//! A request names one tracer, or a `muxTracer` of several. Each becomes a [`Member`]: a revm-inspectors
//! [`DebugInspector`] and what [`crate::geth_shape`] must do to its answer. The members of a request run
//! together in one execution ([`Fanout`]); beside them [`Refunds`] records the transaction's refund counter
//! at every step when the struct logger runs (revm-inspectors does not).
//!
//! Two tracers are run as another and reshaped: `flatCallTracer` runs as the call tracer (geth builds its
//! flat trace from its call tracer's frames, so the replica does too), and the struct logger runs without
//! its `limit` (geth's `limit` counts bytes, revm-inspectors' counts steps; it is applied after).

use alloy_primitives::{Address, B256, KECCAK256_EMPTY};
use alloy_rpc_types_trace::geth::{GethDebugTracerType, GethDebugTracingOptions, GethTrace};
use revm::{
    context::{BlockEnv, TxEnv},
    context_interface::transaction::AuthorizationTr,
    context_interface::{
        journaled_state::account::JournaledAccountTr, result::ResultAndState, ContextTr, JournalTr,
        Transaction,
    },
    inspector::JournalExt,
    interpreter::{
        interpreter::EthInterpreter, CallInputs, CallOutcome, CreateInputs, CreateOutcome, Interpreter,
    },
    precompile::{PrecompileSpecId, Precompiles},
    primitives::{hardfork::SpecId, Log, U256},
    DatabaseRef, Inspector,
};
use revm_inspectors::tracing::{DebugInspector, TransactionContext};
use serde_json::Value;

use crate::{
    geth_shape::{self, AccountFacts, FlatContext},
    geth_trace::TraceError,
};

/// What one member's answer needs beyond revm-inspectors' trace of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// geth's `limit`, in bytes (0: none).
    StructLogger {
        limit: u64,
    },
    CallTracer,
    Prestate {
        diff_mode: bool,
        include_empty: bool,
    },
    FlatCall {
        parity_errors: bool,
        include_precompiles: bool,
    },
    /// Answered by revm-inspectors exactly as geth (4byte, noop, erc7562).
    AsIs,
}

/// One tracer of a request: its name under `muxTracer` (None when it is the only one), what it answers.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: Option<String>,
    pub shape: Shape,
    /// The options its inspector is built from.
    options: GethDebugTracingOptions,
}

/// The tracers a request runs.
#[derive(Debug, Clone)]
pub struct Plan {
    members: Vec<Member>,
    mux: bool,
}

/// Where a traced transaction sits, and what its answer needs from the block.
pub struct Place {
    pub block_hash: Option<B256>,
    pub block_number: u64,
    pub tx_hash: Option<B256>,
    pub tx_index: u64,
    /// Logs the block's earlier transactions emitted (geth numbers logs in the block).
    pub logs_before: u64,
    pub spec_id: SpecId,
    pub chain_id: u64,
}

impl Plan {
    /// The tracers `opts` names; refuses JavaScript tracers and configurations no native tracer takes.
    pub fn new(opts: &GethDebugTracingOptions) -> Result<Self, TraceError> {
        use alloy_rpc_types_trace::geth::GethDebugBuiltInTracerType::MuxTracer;
        if opts.tracer == Some(GethDebugTracerType::BuiltInTracer(MuxTracer)) {
            let config = opts.tracer_config.clone().into_json();
            let none = serde_json::Map::new();
            let members = match &config {
                Value::Null => &none,
                Value::Object(members) => members,
                _ => return Err(TraceError::Config("muxTracer takes an object of tracers".into())),
            };
            let mut plan = Plan { members: Vec::new(), mux: true };
            for (name, member_config) in members {
                let member = member_options(name, member_config)?;
                if member.tracer == opts.tracer {
                    return Err(TraceError::Config("muxTracer cannot contain a muxTracer".into()));
                }
                plan.members.push(Member::new(Some(name.clone()), &member)?);
            }
            return Ok(plan);
        }
        Ok(Plan { members: vec![Member::new(None, opts)?], mux: false })
    }

    /// Fresh inspectors for one transaction.
    pub fn inspectors(&self) -> Result<(Fanout, Refunds), TraceError> {
        let inspectors = self
            .members
            .iter()
            .map(|m| DebugInspector::new(m.options.clone()).map_err(|e| TraceError::Config(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let struct_logs = self.members.iter().any(|m| matches!(m.shape, Shape::StructLogger { .. }));
        Ok((Fanout(inspectors), Refunds { enabled: struct_logs, ..Refunds::default() }))
    }

    /// The answer geth gives for the transaction the inspectors ran over: `db` holds the state before it,
    /// `result` what it did.
    #[allow(clippy::too_many_arguments)]
    pub fn answer<DB: DatabaseRef>(
        &self,
        fanout: Fanout,
        refunds: Refunds,
        place: &Place,
        tx_env: &TxEnv,
        block_env: &BlockEnv,
        result: &ResultAndState,
        db: DB,
    ) -> Result<Value, TraceError> {
        let context = TransactionContext {
            block_hash: place.block_hash,
            tx_index: Some(place.tx_index as usize),
            tx_hash: place.tx_hash,
        };
        let step_refunds = refunds.enabled.then(|| {
            let initial = eip7702_refund(tx_env, &db, place.chain_id);
            refunds.per_step.iter().map(|r| (initial + r).max(0) as u64).collect::<Vec<_>>()
        });
        let mut answers = serde_json::Map::new();
        for (member, mut inspector) in self.members.iter().zip(fanout.0) {
            let trace: GethTrace = inspector
                .get_result(Some(context), tx_env, block_env, result, &mut &db)
                .map_err(|e| TraceError::Failed(e.to_string()))?;
            let mut value = serde_json::to_value(trace).map_err(|e| TraceError::Failed(e.to_string()))?;
            match member.shape {
                Shape::StructLogger { limit } => {
                    geth_shape::struct_logs(&mut value, step_refunds.as_deref(), limit)
                }
                Shape::CallTracer => geth_shape::call_logs(&mut value, place.logs_before),
                Shape::Prestate { diff_mode, include_empty } => {
                    let unseen = delegations_set_on_recipient(tx_env, &db, result);
                    let facts = |a: &Address| account_facts(a, &db, result);
                    geth_shape::prestate(&mut value, diff_mode, include_empty, &unseen, facts)
                }
                Shape::FlatCall { parity_errors, include_precompiles } => {
                    let at = FlatContext {
                        block_hash: place.block_hash,
                        block_number: place.block_number,
                        tx_hash: place.tx_hash,
                        tx_index: place.tx_index,
                    };
                    let precompiles = Precompiles::new(PrecompileSpecId::from_spec_id(place.spec_id));
                    let is_precompile = |a: &Address| precompiles.contains(a);
                    value = geth_shape::flat_from_call(
                        &value,
                        at,
                        parity_errors,
                        include_precompiles,
                        &is_precompile,
                    );
                }
                Shape::AsIs => {}
            }
            if !self.mux {
                return Ok(value);
            }
            answers.insert(member.name.clone().unwrap_or_default(), value);
        }
        Ok(Value::Object(answers))
    }
}

impl Member {
    fn new(name: Option<String>, opts: &GethDebugTracingOptions) -> Result<Self, TraceError> {
        use alloy_rpc_types_trace::geth::GethDebugBuiltInTracerType as B;
        let config = opts.tracer_config.clone().into_json();
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let mut options = opts.clone();
        let shape = match &opts.tracer {
            Some(GethDebugTracerType::JsTracer(code)) if !code.is_empty() => {
                return Err(TraceError::TracerNotFound(code.clone()))
            }
            None | Some(GethDebugTracerType::JsTracer(_)) => {
                options.tracer = None;
                options.config.limit = None;
                Shape::StructLogger { limit: opts.config.limit.unwrap_or(0) }
            }
            Some(GethDebugTracerType::BuiltInTracer(kind)) => match kind {
                B::CallTracer => Shape::CallTracer,
                B::PreStateTracer => {
                    Shape::Prestate { diff_mode: flag("diffMode"), include_empty: flag("includeEmpty") }
                }
                B::FlatCallTracer => {
                    options.tracer = Some(GethDebugTracerType::BuiltInTracer(B::CallTracer));
                    options.tracer_config = serde_json::json!({}).into();
                    Shape::FlatCall {
                        parity_errors: flag("convertParityErrors"),
                        include_precompiles: flag("includePrecompiles"),
                    }
                }
                _ => Shape::AsIs,
            },
        };
        // Refused here, once, before any block is read.
        DebugInspector::new(options.clone()).map_err(|e| TraceError::Config(e.to_string()))?;
        Ok(Member { name, shape, options })
    }
}

/// A `muxTracer` member's options. geth accepts `{}` as the configuration of a tracer that takes none
/// (`4byteTracer`, `noopTracer`), revm-inspectors only none.
fn member_options(name: &str, config: &Value) -> Result<GethDebugTracingOptions, TraceError> {
    let takes_none = matches!(name, "4byteTracer" | "noopTracer");
    let empty = config.as_object().is_some_and(|c| c.is_empty());
    let mut opts = serde_json::json!({"tracer": name});
    if !(config.is_null() || (takes_none && empty)) {
        opts["tracerConfig"] = config.clone();
    }
    let opts: GethDebugTracingOptions =
        serde_json::from_value(opts).map_err(|e| TraceError::Config(format!("muxTracer {name}: {e}")))?;
    if matches!(&opts.tracer, Some(GethDebugTracerType::JsTracer(_))) {
        return Err(TraceError::TracerNotFound(name.to_owned()));
    }
    Ok(opts)
}

/// An account before and after a transaction, as the prestate tracer's reshaping needs it.
fn account_facts<DB: DatabaseRef>(address: &Address, db: &DB, result: &ResultAndState) -> AccountFacts {
    let before = db.basic_ref(*address).ok().flatten();
    let has_code = |hash: B256| hash != KECCAK256_EMPTY && hash != B256::ZERO;
    AccountFacts {
        empty_before: before
            .as_ref()
            .is_none_or(|i| i.nonce == 0 && i.balance.is_zero() && !has_code(i.code_hash)),
        code_hash_before: before.map(|i| i.code_hash).filter(|h| has_code(*h)),
        code_hash_after: result.state.get(address).map(|a| a.info.code_hash),
    }
}

/// Accounts geth's prestate tracer does not see: the code a transaction's recipient runs when the
/// transaction itself delegates the recipient (geth looks up a recipient's delegation target when the
/// transaction starts, before its authorizations apply), unless the execution touched them otherwise.
fn delegations_set_on_recipient<DB: DatabaseRef>(
    tx: &TxEnv,
    db: &DB,
    result: &ResultAndState,
) -> Vec<Address> {
    let revm::primitives::TxKind::Call(to) = tx.kind else { return Vec::new() };
    if tx.authorization_list_len() == 0 {
        return Vec::new();
    }
    let delegated_before =
        db.basic_ref(to).ok().flatten().and_then(|i| i.code).is_some_and(|code| code.is_eip7702());
    if delegated_before {
        return Vec::new();
    }
    tx.authorization_list()
        .filter(|auth| auth.authority() == Some(to))
        .map(|auth| auth.address())
        .filter(|target| *target != to && *target != tx.caller)
        .filter(|target| result.state.get(target).is_none_or(|a| !a.is_touched()))
        .collect()
}

/// The refund EIP-7702 grants a transaction before it runs: 12,500 gas (`PER_EMPTY_ACCOUNT_COST -
/// PER_AUTH_BASE_COST`) for each valid authorization whose authority already exists. geth's refund counter
/// starts there; revm adds it after execution, so the recorder's counts start at zero. Computed by revm's
/// own rule over a scratch journal on the state before the transaction (the sender's nonce bumped first, as
/// the transaction does before it applies the list).
fn eip7702_refund<DB: DatabaseRef>(tx: &TxEnv, db: &DB, chain_id: u64) -> i64 {
    if tx.authorization_list_len() == 0 {
        return 0;
    }
    let mut journal: revm::Journal<_> = revm::Journal::new(revm::database::WrapDatabaseRef(db));
    if let Ok(mut caller) = journal.load_account_mut(tx.caller) {
        caller.data.bump_nonce();
    }
    let refunded = revm::handler::pre_execution::apply_auth_list::<
        _,
        revm::context_interface::result::EVMError<DB::Error>,
    >(chain_id, tx.authorization_list(), &mut journal);
    refunded.map_or(0, |n| n as i64 * 12_500)
}

/// Every member's inspector, run over one execution.
pub struct Fanout(Vec<DebugInspector>);

impl<CTX: ContextTr<Journal: JournalExt>> Inspector<CTX, EthInterpreter> for Fanout {
    fn initialize_interp(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        self.0.iter_mut().for_each(|i| i.initialize_interp(interp, context));
    }

    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        self.0.iter_mut().for_each(|i| i.step(interp, context));
    }

    fn step_end(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        self.0.iter_mut().for_each(|i| i.step_end(interp, context));
    }

    fn log(&mut self, context: &mut CTX, log: Log) {
        self.0.iter_mut().for_each(|i| i.log(context, log.clone()));
    }

    fn log_full(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX, log: Log) {
        self.0.iter_mut().for_each(|i| i.log_full(interp, context, log.clone()));
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        // Tracers observe; none of them answers a call in the EVM's place.
        self.0.iter_mut().fold(None, |first, i| first.or(i.call(context, inputs)))
    }

    fn call_end(&mut self, context: &mut CTX, inputs: &CallInputs, outcome: &mut CallOutcome) {
        self.0.iter_mut().for_each(|i| i.call_end(context, inputs, outcome));
    }

    fn create(&mut self, context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.0.iter_mut().fold(None, |first, i| first.or(i.create(context, inputs)))
    }

    fn create_end(&mut self, context: &mut CTX, inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        self.0.iter_mut().for_each(|i| i.create_end(context, inputs, outcome));
    }

    fn selfdestruct(&mut self, contract: Address, target: Address, value: U256) {
        self.0
            .iter_mut()
            .for_each(|i| Inspector::<CTX, EthInterpreter>::selfdestruct(i, contract, target, value));
    }
}

/// The transaction's refund counter before each step, as geth's struct logger shows it (`refund`).
///
/// revm keeps refunds per frame: a frame's counter holds its own and those of the sub-calls that returned
/// successfully into it (a reverted sub-call's are dropped, as geth's journal drops them). The transaction's
/// counter at a step is therefore the sum over the frames on the call stack.
#[derive(Debug, Default)]
pub struct Refunds {
    enabled: bool,
    /// The counter of each frame on the stack, by depth.
    frames: Vec<i64>,
    per_step: Vec<i64>,
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for Refunds {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        if !self.enabled {
            return;
        }
        let depth = context.journal_ref().depth();
        // Deeper frames have returned (their refunds are in this frame's counter now, or dropped).
        self.frames.resize(depth + 1, 0);
        self.frames[depth] = interp.gas.refunded();
        self.per_step.push(self.frames.iter().sum());
    }

    /// geth shows a step's counter after the step's gas is charged: an SSTORE's own refund is in its step.
    fn step_end(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        if !self.enabled {
            return;
        }
        let depth = context.journal_ref().depth();
        if let (Some(frame), Some(last)) = (self.frames.get_mut(depth), self.per_step.last_mut()) {
            let before = *frame;
            *frame = interp.gas.refunded();
            *last += *frame - before;
        }
    }
}
