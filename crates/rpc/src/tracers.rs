//! Which inspectors a `debug_trace*` request runs, and how their answers become geth's.
//!
//! A request names one tracer, or a `muxTracer` of several. Each becomes a [`Member`]: a revm-inspectors
//! [`DebugInspector`] and what [`crate::geth_shape`] must do to its answer. The members of a request run
//! together in one execution ([`Fanout`]), under revm-inspectors' byte budget; beside them the replica
//! records what geth shows and revm-inspectors does not ([`Recorders`]): the refund counter and stack depth
//! of every struct-logger step ([`StepFacts`]), and the words for a frame's stack underflow ([`FrameErrors`]).
//!
//! Two tracers are run as another and reshaped: `flatCallTracer` runs as the call tracer (geth builds its
//! flat trace from its call tracer's frames, so the replica does too), and the struct logger records the most
//! steps geth's `limit` can keep (geth's `limit` counts bytes, revm-inspectors' steps; the bytes are counted
//! after).

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
use revm_inspectors::tracing::{DebugInspector, TracingInspector, TransactionContext};
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
        disable_code: bool,
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

    /// Fresh inspectors for one transaction, recording at most `max_bytes` of call inputs, memory and
    /// return data (revm-inspectors' own budget: past it they record no more and say so).
    pub fn inspectors(&self, max_bytes: usize) -> Result<(Fanout, Recorders), TraceError> {
        let budget = revm_inspectors::tracing::TraceLimits::default().set_max_recorded_bytes(Some(max_bytes));
        let mut inspectors = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let mut inspector =
                DebugInspector::new(member.options.clone()).map_err(|e| TraceError::Config(e.to_string()))?;
            if let Some(tracing) = recording(&mut inspector) {
                *tracing = std::mem::take(tracing).with_limits(budget);
            }
            inspectors.push(inspector);
        }
        let cap = self.members.iter().find_map(|m| match m.shape {
            Shape::StructLogger { limit } => Some(steps_within(limit)),
            _ => None,
        });
        let steps = StepFacts { enabled: cap.is_some(), cap: cap.unwrap_or(0), ..StepFacts::default() };
        let calls =
            self.members.iter().any(|m| matches!(m.shape, Shape::CallTracer | Shape::FlatCall { .. }));
        let frames = FrameErrors { enabled: calls, ..FrameErrors::default() };
        Ok((Fanout(inspectors), (steps, frames)))
    }

    /// The answer geth gives for the transaction the inspectors ran over.
    pub fn answer<DB: DatabaseRef>(
        &self,
        fanout: Fanout,
        recorders: Recorders,
        place: &Place,
        run: TxRun<'_, DB>,
    ) -> Result<Value, TraceError> {
        let TxRun { tx_env, block_env, result, db } = run;
        let (facts, frames) = recorders;
        let context = TransactionContext {
            block_hash: place.block_hash,
            tx_index: Some(place.tx_index as usize),
            tx_hash: place.tx_hash,
        };
        let refunds = facts.enabled.then(|| {
            let initial = eip7702_refund(tx_env, &db, place.chain_id);
            facts.per_step.iter().map(|r| (initial + r).max(0) as u64).collect::<Vec<_>>()
        });
        let step_facts = refunds
            .as_deref()
            .map(|refunds| geth_shape::StepFacts { refunds, stack_lens: &facts.stack_lens });
        let mut answers = serde_json::Map::new();
        for (member, mut inspector) in self.members.iter().zip(fanout.0) {
            let trace: GethTrace = inspector
                .get_result(Some(context), tx_env, block_env, result, &mut &db)
                .map_err(|e| TraceError::Failed(e.to_string()))?;
            let mut value = serde_json::to_value(trace).map_err(|e| TraceError::Failed(e.to_string()))?;
            match member.shape {
                Shape::StructLogger { limit } => geth_shape::struct_logs(&mut value, step_facts, limit),
                Shape::CallTracer => {
                    frames.apply(&mut value);
                    geth_shape::precompile_errors(&mut value, execution_gas(tx_env, place.spec_id));
                    geth_shape::call_logs(&mut value, place.logs_before)
                }
                Shape::Prestate { diff_mode, include_empty, disable_code } => {
                    if !diff_mode {
                        let delegation = recipient_delegation(tx_env, &db);
                        delegation.as_geth_sees_it(&mut value, &db, result, disable_code);
                    }
                    let facts = |a: &Address| account_facts(a, &db, result);
                    geth_shape::prestate(&mut value, diff_mode, include_empty, facts)
                }
                Shape::FlatCall { parity_errors, include_precompiles } => {
                    frames.apply(&mut value);
                    geth_shape::precompile_errors(&mut value, execution_gas(tx_env, place.spec_id));
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

/// What the replica records beside revm-inspectors for geth's answers: per step ([`StepFacts`]) and per
/// frame ([`FrameErrors`]).
pub type Recorders = (StepFacts, FrameErrors);

/// One transaction's run, as the tracers' answers need it: its environment and the block's, its result,
/// and `db`, the state before it.
pub struct TxRun<'r, DB> {
    pub tx_env: &'r TxEnv,
    pub block_env: &'r BlockEnv,
    pub result: &'r ResultAndState,
    pub db: DB,
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
                // revm-inspectors counts steps, geth bytes: record the most steps geth's limit can keep, and
                // cut by bytes after.
                let limit = opts.config.limit.unwrap_or(0);
                options.config.limit = (limit > 0).then(|| steps_within(limit) as u64);
                Shape::StructLogger { limit }
            }
            Some(GethDebugTracerType::BuiltInTracer(kind)) => match kind {
                B::CallTracer => Shape::CallTracer,
                B::PreStateTracer => Shape::Prestate {
                    diff_mode: flag("diffMode"),
                    include_empty: flag("includeEmpty"),
                    disable_code: flag("disableCode"),
                },
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

/// The transaction recipient's EIP-7702 delegation as geth's prestate tracer sees it. geth looks up the
/// recipient's delegation target when the transaction starts, before the transaction's own authorizations
/// apply: it sees the target the recipient had before (`before`), which revm does not load when an
/// authorization replaces it, and not the targets the authorizations set (`set`), which revm loads to run.
#[derive(Debug, Default)]
struct RecipientDelegation {
    recipient: Option<Address>,
    before: Option<Address>,
    set: Vec<Address>,
}

fn recipient_delegation<DB: DatabaseRef>(tx: &TxEnv, db: &DB) -> RecipientDelegation {
    let revm::primitives::TxKind::Call(to) = tx.kind else { return RecipientDelegation::default() };
    let before = db
        .basic_ref(to)
        .ok()
        .flatten()
        .filter(|i| i.code_hash != KECCAK256_EMPTY && i.code_hash != B256::ZERO)
        .and_then(|i| db.code_by_hash_ref(i.code_hash).ok())
        .and_then(|code| delegation_target(code.original_byte_slice()));
    let set = tx
        .authorization_list()
        .filter(|auth| auth.authority() == Some(to))
        .map(|auth| auth.address())
        .filter(|target| Some(*target) != before && *target != to && *target != tx.caller)
        .collect();
    RecipientDelegation { recipient: Some(to), before, set }
}

/// The target of an EIP-7702 delegation designator (`0xef0100 || address`).
fn delegation_target(code: &[u8]) -> Option<Address> {
    (code.len() == 23 && code.starts_with(&[0xef, 0x01, 0x00])).then(|| Address::from_slice(&code[3..]))
}

impl RecipientDelegation {
    /// A non-diff prestate made as geth's: the targets the transaction set left out unless the execution
    /// touched them otherwise (an approximation: a target only read, by `BALANCE` or `EXTCODE*`, is left
    /// out too), the target the recipient had before added as geth's lookup records it.
    fn as_geth_sees_it<DB: DatabaseRef>(
        &self,
        prestate: &mut Value,
        db: &DB,
        result: &ResultAndState,
        disable_code: bool,
    ) {
        let Some(accounts) = prestate.as_object_mut() else { return };
        if self.recipient.is_none() {
            return;
        }
        for target in &self.set {
            if result.state.get(target).is_none_or(|a| !a.is_touched()) {
                accounts.remove(&target.to_string().to_lowercase());
            }
        }
        let Some(before) = self.before else { return };
        let key = before.to_string().to_lowercase();
        if accounts.contains_key(&key) {
            return;
        }
        let Some(info) = db.basic_ref(before).ok().flatten() else { return };
        let mut account = serde_json::json!({"balance": format!("{:#x}", info.balance)});
        if info.nonce != 0 {
            account["nonce"] = info.nonce.into();
        }
        if !disable_code && info.code_hash != KECCAK256_EMPTY && info.code_hash != B256::ZERO {
            if let Ok(code) = db.code_by_hash_ref(info.code_hash) {
                account["code"] =
                    format!("{}", alloy_primitives::Bytes::copy_from_slice(code.original_byte_slice()))
                        .into();
            }
        }
        accounts.insert(key, account);
    }
}

/// The gas a transaction's own call has: its limit less the intrinsic gas.
fn execution_gas(tx: &TxEnv, spec: SpecId) -> u64 {
    let intrinsic = revm::context_interface::cfg::gas::calculate_initial_tx_gas_for_tx(tx, spec, None);
    tx.gas_limit.saturating_sub(intrinsic.initial_regular_gas + intrinsic.initial_state_gas)
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

impl Fanout {
    /// Bytes the members recorded (call inputs, memory, return data), for the request's size cap.
    pub fn recorded_bytes(&mut self) -> usize {
        self.0.iter_mut().filter_map(recording).map(|t| t.recorded_bytes()).sum()
    }

    /// Whether a member stopped recording at its budget (its answer would be incomplete).
    pub fn limit_exceeded(&mut self) -> bool {
        self.0.iter_mut().filter_map(recording).any(|t| t.limit_exceeded())
    }
}

/// The recording inspector inside a tracer, for those that have one (all but 4byte and noop).
fn recording(inspector: &mut DebugInspector) -> Option<&mut TracingInspector> {
    match inspector {
        DebugInspector::CallTracer(t, _)
        | DebugInspector::PreStateTracer(t, _)
        | DebugInspector::FlatCallTracer(t)
        | DebugInspector::Erc7562Tracer(t, _)
        | DebugInspector::Default(t, _) => Some(t),
        _ => None,
    }
}

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

/// What geth's struct logger shows of each step that revm-inspectors does not record: the transaction's
/// refund counter (`refund`), and the stack's depth (for geth's words on a stack underflow, which name it
/// even when the stack is not shown).
///
/// revm keeps refunds per frame: a frame's counter holds its own and those of the sub-calls that returned
/// successfully into it (a reverted sub-call's are dropped, as geth's journal drops them). The transaction's
/// counter at a step is therefore the sum over the frames on the call stack.
#[derive(Debug, Default)]
pub struct StepFacts {
    enabled: bool,
    /// Steps recorded at most (those geth's `limit` can keep; the struct logger records no more).
    cap: usize,
    /// The counter of each frame on the stack, by depth.
    frames: Vec<i64>,
    per_step: Vec<i64>,
    stack_lens: Vec<u16>,
    /// The step being run was recorded (its `step_end` updates it).
    pending: bool,
}

impl StepFacts {
    /// Whether this step is one to record.
    fn recording(&self) -> bool {
        self.enabled && self.per_step.len() < self.cap
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for StepFacts {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        if !self.recording() {
            return;
        }
        let depth = context.journal_ref().depth();
        // Deeper frames have returned (their refunds are in this frame's counter now, or dropped).
        self.frames.resize(depth + 1, 0);
        self.frames[depth] = interp.gas.refunded();
        self.per_step.push(self.frames.iter().sum());
        self.stack_lens.push(interp.stack.len() as u16);
        self.pending = true;
    }

    /// geth shows a step's counter after the step's gas is charged: an SSTORE's own refund is in its step.
    fn step_end(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        if !std::mem::take(&mut self.pending) {
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

/// The most struct-logger steps geth's `limit` (bytes of answer, 0: none) can keep: a step's JSON takes at
/// least 50 bytes, and geth keeps steps while the answer is at most `limit`, so one more than `limit / 50`.
pub fn steps_within(limit: u64) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        usize::try_from(limit / 50 + 1).unwrap_or(usize::MAX)
    }
}

/// The stack underflow that ended a frame, in geth's words (`stack underflow (2 <=> 3)`: the stack's depth and
/// what the opcode needed), for the call tracer's `error`; revm-inspectors says only "stack underflow".
/// Frames are numbered in the order they start (the call tracer's frames depth-first, SELFDESTRUCT frames
/// apart: they start no frame).
#[derive(Debug, Default)]
pub struct FrameErrors {
    enabled: bool,
    started: usize,
    /// The frames running, innermost last: each one's number and its last step (stack depth, opcode).
    open: Vec<(usize, Option<(usize, u8)>)>,
    underflows: std::collections::HashMap<usize, String>,
}

impl FrameErrors {
    fn start(&mut self) {
        if self.enabled {
            self.open.push((self.started, None));
            self.started += 1;
        }
    }

    fn end(&mut self, result: revm::interpreter::InstructionResult) {
        let Some((frame, last)) = self.open.pop() else { return };
        if let (revm::interpreter::InstructionResult::StackUnderflow, Some((depth, op))) = (result, last) {
            let needed = revm::bytecode::opcode::OpCode::new(op).map_or(0, |o| o.inputs());
            self.underflows.insert(frame, format!("stack underflow ({depth} <=> {needed})"));
        }
    }

    /// A call tracer's frames (`frame` and those under it) with geth's words for their underflows.
    fn apply(&self, frame: &mut Value) {
        if !self.underflows.is_empty() {
            self.apply_from(frame, &mut 0);
        }
    }

    fn apply_from(&self, frame: &mut Value, next: &mut usize) {
        if frame.get("type").and_then(Value::as_str) == Some("SELFDESTRUCT") {
            return;
        }
        let number = *next;
        *next += 1;
        if let Some(words) = self.underflows.get(&number) {
            if frame.get("error").and_then(Value::as_str) == Some("stack underflow") {
                frame["error"] = words.clone().into();
            }
        }
        for call in frame.get_mut("calls").and_then(Value::as_array_mut).into_iter().flatten() {
            self.apply_from(call, next);
        }
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for FrameErrors {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        use revm::interpreter::interpreter_types::Jumps;
        if let Some((_, last)) = self.open.last_mut() {
            *last = Some((interp.stack.len(), interp.bytecode.opcode()));
        }
    }

    fn call(&mut self, _context: &mut CTX, _inputs: &mut CallInputs) -> Option<CallOutcome> {
        self.start();
        None
    }

    fn call_end(&mut self, _context: &mut CTX, _inputs: &CallInputs, outcome: &mut CallOutcome) {
        self.end(outcome.result.result);
    }

    fn create(&mut self, _context: &mut CTX, _inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.start();
        None
    }

    fn create_end(&mut self, _context: &mut CTX, _inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        self.end(outcome.result.result);
    }
}
