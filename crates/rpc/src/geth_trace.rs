//! geth's `debug_trace*` answers: every native tracer geth has (the struct logger with its options,
//! `callTracer`, `prestateTracer` with and without `diffMode`, `4byteTracer`, `flatCallTracer`, `muxTracer`,
//! `noopTracer`, `erc7562Tracer`), built by `revm-inspectors` over a [`Replay`] of the block.
//!
//! JavaScript tracers need a JavaScript engine, which the replica does not carry: a tracer name that is not
//! a native tracer is refused as geth refuses an unknown tracer.
//!
//! **Limits.** Every trace runs under a [`Guard`]: a deadline (geth's `timeout` option, at most the
//! replica's own) and a cap on the answer's size, estimated while the struct logger records (an unfiltered
//! struct-logger trace of one mainnet block can exceed 32 GB). Past either the execution stops at its next
//! instruction and the request answers an error that says which.

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use alloy_rpc_types_trace::geth::{GethDebugTracerType, GethDebugTracingOptions, GethTrace, TraceResult};
use revm::{
    context::Context,
    context_interface::ContextTr,
    interpreter::{interpreter::EthInterpreter, interpreter_types::MemoryTr, InstructionResult, Interpreter},
    InspectEvm, Inspector, MainBuilder, MainContext,
};
use revm_inspectors::tracing::{DebugInspector, TransactionContext};

use crate::{
    evm,
    exec::{ExecError, Replay},
};

/// Why a trace has no answer.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// geth's words for a tracer it does not know (a JavaScript tracer, here).
    #[error("tracer not found: {0} (the replica runs geth's native tracers only, not JavaScript)")]
    TracerNotFound(String),
    #[error("invalid tracer config: {0}")]
    Config(String),
    #[error("the trace exceeds the replica's response size cap ({0} MB): filter it (disableStack, a tracer, limit) or trace a transaction at a time")]
    TooLarge(usize),
    #[error("trace: {0}")]
    Failed(String),
}

/// The bounds every trace runs under.
#[derive(Debug, Clone, Copy)]
pub struct TraceLimits {
    /// When the trace must have finished.
    pub deadline: Instant,
    /// The timeout the deadline came from, for the error.
    pub timeout: Duration,
    /// The most bytes the answer may take (estimated).
    pub max_bytes: usize,
}

/// geth's `timeout` option ("10s", "500ms", "1m"), at most `cap`; `cap` when absent.
pub fn timeout(option: Option<&str>, cap: Duration) -> Result<Duration, TraceError> {
    let Some(text) = option else { return Ok(cap) };
    let (digits, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let value: f64 = digits.parse().map_err(|_| TraceError::Config(format!("timeout {text:?}")))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(TraceError::Config(format!("timeout {text:?}: time: unknown unit {unit:?}"))),
    };
    Ok(Duration::from_secs_f64(seconds.max(0.0)).min(cap))
}

/// The options as revm-inspectors takes them: geth accepts `{}` as the configuration of a `muxTracer` member
/// that takes none (`4byteTracer`, `noopTracer`), revm-inspectors only `null`.
pub fn normalised(mut opts: GethDebugTracingOptions) -> GethDebugTracingOptions {
    use alloy_rpc_types_trace::geth::GethDebugBuiltInTracerType::MuxTracer;
    if opts.tracer == Some(GethDebugTracerType::BuiltInTracer(MuxTracer)) {
        let mut config = opts.tracer_config.clone().into_json();
        if let Some(members) = config.as_object_mut() {
            for (name, member) in members.iter_mut() {
                let empty = member.as_object().is_some_and(|m| m.is_empty());
                if empty && (name == "4byteTracer" || name == "noopTracer") {
                    *member = serde_json::Value::Null;
                }
            }
            opts.tracer_config = config.into();
        }
    }
    opts
}

/// Refuses what no native tracer answers. The namespace calls it before it takes a permit or reads a block;
/// [`transaction`], [`block`] and [`call`] take options it has accepted.
pub fn check_tracer(opts: &GethDebugTracingOptions) -> Result<(), TraceError> {
    match &opts.tracer {
        Some(GethDebugTracerType::JsTracer(name)) if !name.is_empty() => {
            Err(TraceError::TracerNotFound(name.clone()))
        }
        _ => debug_inspector(opts).map(drop),
    }
}

/// Traces transaction `index` of the replay's block (running the ones before it untraced).
pub fn transaction(
    replay: &mut Replay,
    index: usize,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<GethTrace, TraceError> {
    replay.skip_to(index)?;
    let mut guard = Guard::new(opts, limits);
    next(replay, opts, &mut guard).map(|(trace, _)| trace)
}

/// Traces every transaction of the replay's block, each with its hash, as geth's block methods answer.
pub fn block(
    replay: &mut Replay,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<Vec<TraceResult>, TraceError> {
    let mut guard = Guard::new(opts, limits);
    let mut out = Vec::with_capacity(replay.len());
    for _ in 0..replay.len() {
        let (trace, hash) = next(replay, opts, &mut guard)?;
        out.push(TraceResult::Success { result: trace, tx_hash: Some(hash) });
    }
    Ok(out)
}

/// Traces a call as `eth_call` would run it ([`evm::prepare`]: on top of a block, with its overrides).
pub fn call(
    prepared: evm::Prepared,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<GethTrace, TraceError> {
    let evm::Prepared { mut db, block_env, cfg, tx } = prepared;
    let inspector = debug_inspector(opts)?;
    let (result, (mut inspector, guard)) = {
        let mut evm = Context::mainnet()
            .with_db(&mut db)
            .with_block(block_env.clone())
            .with_cfg(cfg)
            .build_mainnet_with_inspector((inspector, Guard::new(opts, limits)));
        (evm.inspect_tx(tx.clone()), evm.inspector)
    };
    guard.check()?;
    let result = result.map_err(|e| TraceError::Failed(format!("tracing failed: {e:?}")))?;
    inspector
        .get_result(None, &tx, &block_env, &result, &mut &db)
        .map(as_geth)
        .map_err(|e| TraceError::Failed(e.to_string()))
}

/// The tracer the options name.
fn debug_inspector(opts: &GethDebugTracingOptions) -> Result<DebugInspector, TraceError> {
    DebugInspector::new(normalised(opts.clone())).map_err(|e| TraceError::Config(e.to_string()))
}

/// Traces and commits the replay's next transaction; its trace and hash.
fn next(
    replay: &mut Replay,
    opts: &GethDebugTracingOptions,
    guard: &mut Guard,
) -> Result<(GethTrace, B256), TraceError> {
    let (executed, (mut inspector, guard)) = replay.execute((debug_inspector(opts)?, guard))?;
    guard.check()?;
    let context = TransactionContext {
        block_hash: Some(replay.block.hash),
        tx_index: Some(executed.index),
        tx_hash: Some(executed.hash),
    };
    let trace = inspector
        .get_result(Some(context), &executed.tx_env, replay.block_env(), &executed.result, &mut replay.db())
        .map_err(|e| TraceError::Failed(e.to_string()))?;
    let hash = executed.hash;
    replay.commit(executed);
    Ok((as_geth(trace), hash))
}

/// The struct logger's steps as geth writes them: geth leaves out a zero refund counter and empty return
/// data, memory and storage (revm-inspectors writes them), and names a failed step's error in its own words.
fn as_geth(trace: GethTrace) -> GethTrace {
    let GethTrace::Default(mut frame) = trace else { return trace };
    for step in &mut frame.struct_logs {
        step.refund_counter = step.refund_counter.filter(|r| *r != 0);
        step.return_data = step.return_data.take().filter(|d| !d.is_empty());
        step.memory = step.memory.take().filter(|m| !m.is_empty());
        step.storage = step.storage.take().filter(|s| !s.is_empty());
        step.error = step.error.take().map(|e| geth_error(&e));
    }
    GethTrace::Default(frame)
}

/// geth's wording of an EVM error revm-inspectors reports by its Rust name (`OutOfGas`, or `Some(OutOfGas)`).
fn geth_error(revm: &str) -> String {
    let name = revm.trim_start_matches("Some(").trim_end_matches(')');
    match name {
        "OutOfGas" | "MemoryOOG" | "MemoryLimitOOG" | "PrecompileOOG" | "InvalidOperandOOG" => "out of gas",
        "StackUnderflow" => "stack underflow",
        "StackOverflow" => "stack limit reached 1024 (1023)",
        "InvalidJump" => "invalid jump destination",
        "OpcodeNotFound" | "InvalidFEOpcode" => "invalid opcode",
        "StateChangeDuringStaticCall" | "CallNotAllowedInsideStatic" => "write protection",
        "OutOfOffset" | "InvalidOperand" => "return data out of bounds",
        "CallTooDeep" => "max call depth exceeded",
        "OutOfFunds" => "insufficient balance for transfer",
        "Revert" => "execution reverted",
        "CreateCollision" => "contract address collision",
        "CreateContractSizeLimit" => "max code size exceeded",
        "CreateInitCodeSizeLimit" => "max initcode size exceeded",
        "CreateContractStartingWithEF" => "invalid code: must not begin with 0xef",
        "NonceOverflow" => "nonce uint64 overflow",
        other => return other.to_owned(),
    }
    .to_owned()
}

/// Stops a trace at its deadline (the EVM's own [`evm::DeadlineInspector`]) or when its answer grows past the
/// size cap (estimated per recorded step of the struct logger: what each step's JSON takes with the stack and
/// memory it shows).
pub struct Guard {
    clock: evm::DeadlineInspector,
    timeout: Duration,
    max_bytes: usize,
    /// Estimated bytes per struct-logger step before its stack and memory; 0 when no struct logs are kept.
    step_bytes: usize,
    per_stack_item: usize,
    per_memory_byte: usize,
    bytes: usize,
    too_large: bool,
}

impl Guard {
    pub fn new(opts: &GethDebugTracingOptions, limits: TraceLimits) -> Self {
        let struct_logs = opts.tracer.as_ref().is_none_or(|t| t.as_str().is_empty());
        let c = &opts.config;
        Guard {
            clock: evm::DeadlineInspector::new(limits.deadline),
            timeout: limits.timeout,
            max_bytes: limits.max_bytes,
            // {"pc":…,"op":"…","gas":…,"gasCost":…,"depth":…} and the commas: about 80 bytes.
            step_bytes: if struct_logs { 80 } else { 0 },
            per_stack_item: if struct_logs && !c.disable_stack.unwrap_or(false) { 70 } else { 0 },
            per_memory_byte: if struct_logs && c.enable_memory.unwrap_or(false) { 3 } else { 0 },
            bytes: 0,
            too_large: false,
        }
    }

    fn check(&self) -> Result<(), TraceError> {
        if self.too_large {
            return Err(TraceError::TooLarge(self.max_bytes >> 20));
        }
        if self.clock.expired {
            return Err(ExecError::Timeout(self.timeout).into());
        }
        Ok(())
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for Guard {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        if self.step_bytes > 0 && !self.too_large {
            self.bytes += self.step_bytes
                + self.per_stack_item * interp.stack.len()
                + self.per_memory_byte * interp.memory.size();
            self.too_large = self.bytes > self.max_bytes;
        }
        if self.too_large {
            // Out of gas, as the clock halts: the result is discarded for the cap's error.
            interp.halt(InstructionResult::OutOfGas);
            return;
        }
        self.clock.step(interp, context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_option_table() {
        let cap = Duration::from_secs(10);
        let cases = [
            (None, Some(cap)),
            (Some("5s"), Some(Duration::from_secs(5))),
            (Some("500ms"), Some(Duration::from_millis(500))),
            (Some("1m"), Some(cap)),
            (Some("1.5s"), Some(Duration::from_millis(1500))),
            (Some("5"), None),
            (Some("xs"), None),
        ];
        for (option, want) in cases {
            assert_eq!(timeout(option, cap).ok(), want, "{option:?}");
        }
    }

    #[test]
    fn javascript_tracers_are_refused_and_native_ones_accepted() {
        let js: GethDebugTracingOptions =
            serde_json::from_value(serde_json::json!({"tracer": "{step: function() {}}"})).unwrap();
        assert!(matches!(check_tracer(&js), Err(TraceError::TracerNotFound(_))));
        for name in
            ["callTracer", "prestateTracer", "4byteTracer", "flatCallTracer", "noopTracer", "muxTracer"]
        {
            let opts: GethDebugTracingOptions =
                serde_json::from_value(serde_json::json!({"tracer": name})).unwrap();
            assert!(check_tracer(&opts).is_ok(), "{name}: {:?}", check_tracer(&opts));
        }
        assert!(check_tracer(&GethDebugTracingOptions::default()).is_ok());
    }
}
