//! geth's `debug_trace*` answers: every native tracer geth has (the struct logger with its options,
//! `callTracer`, `prestateTracer` with and without `diffMode`, `4byteTracer`, `flatCallTracer`, `muxTracer`,
//! `noopTracer`, `erc7562Tracer`), built by `revm-inspectors` over a [`Replay`] of the block
//! ([`crate::tracers`] says which inspectors a request runs) and reshaped to geth's answers
//! ([`crate::geth_shape`]).
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
use alloy_rpc_types_trace::geth::GethDebugTracingOptions;
use revm::{
    context::Context,
    context_interface::ContextTr,
    interpreter::{interpreter::EthInterpreter, interpreter_types::MemoryTr, InstructionResult, Interpreter},
    InspectEvm, Inspector, MainBuilder, MainContext,
};
use serde_json::{json, Value};

use crate::{
    evm,
    exec::{ExecError, Replay},
    tracers::{steps_within, Place, Plan, TxRun},
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

/// Traces transaction `index` of the replay's block (running the ones before it untraced).
pub fn transaction(
    replay: &mut Replay,
    index: usize,
    plan: &Plan,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<Value, TraceError> {
    replay.skip_to(index)?;
    let mut guard = Guard::new(opts, limits);
    next(replay, plan, &mut guard).map(|(trace, _)| trace)
}

/// Traces every transaction of the replay's block, each with its hash, as geth's block methods answer.
pub fn block(
    replay: &mut Replay,
    plan: &Plan,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<Vec<Value>, TraceError> {
    let mut guard = Guard::new(opts, limits);
    let mut out = Vec::with_capacity(replay.len());
    for _ in 0..replay.len() {
        let (trace, hash) = next(replay, plan, &mut guard)?;
        out.push(json!({"txHash": hash, "result": trace}));
    }
    Ok(out)
}

/// Traces a call as `eth_call` would run it ([`evm::prepare`]: on top of a block, with its overrides).
pub fn call(
    prepared: evm::Prepared,
    place: &Place,
    plan: &Plan,
    opts: &GethDebugTracingOptions,
    limits: TraceLimits,
) -> Result<Value, TraceError> {
    let evm::Prepared { mut db, block_env, cfg, tx } = prepared;
    let mut guard = Guard::new(opts, limits);
    let (fanout, recorders) = plan.inspectors(guard.remaining())?;
    let (result, (mut fanout, (guard, recorders))) = {
        let mut evm = Context::mainnet()
            .with_db(&mut db)
            .with_block(block_env.clone())
            .with_cfg(cfg)
            .build_mainnet_with_inspector((fanout, (&mut guard, recorders)));
        (evm.inspect_tx(tx.clone()), evm.inspector)
    };
    guard.record(fanout.recorded_bytes(), fanout.limit_exceeded());
    guard.check()?;
    let result = result.map_err(|e| TraceError::Failed(format!("tracing failed: {e:?}")))?;
    let run = TxRun { tx_env: &tx, block_env: &block_env, result: &result, db: &db };
    plan.answer(fanout, recorders, place, run)
}

/// Traces and commits the replay's next transaction; its trace and hash.
fn next(replay: &mut Replay, plan: &Plan, guard: &mut Guard) -> Result<(Value, B256), TraceError> {
    let (fanout, recorders) = plan.inspectors(guard.remaining())?;
    let (executed, (mut fanout, (guard, recorders))) = replay.execute((fanout, (guard, recorders)))?;
    guard.record(fanout.recorded_bytes(), fanout.limit_exceeded());
    guard.check()?;
    let place = replay.place();
    let run = TxRun {
        tx_env: &executed.tx_env,
        block_env: replay.block_env(),
        result: &executed.result,
        db: replay.db(),
    };
    let trace = plan.answer(fanout, recorders, &place, run)?;
    let hash = executed.hash;
    replay.commit(executed);
    Ok((trace, hash))
}

/// Stops a trace at its deadline (the EVM's own [`evm::DeadlineInspector`]) or when its answer grows past the
/// size cap (estimated per recorded step of the struct logger: what each step's JSON takes with the stack and
/// memory it shows).
pub struct Guard {
    /// Struct-logger steps still counted (those geth's `limit` can keep; the logger records no more).
    steps_left: usize,
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
            steps_left: steps_within(c.limit.unwrap_or(0)),
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

    /// For parity traces: a `vmTrace` records every step (about 150 bytes of JSON each); the others record
    /// calls only, bounded by the deadline.
    pub fn parity(vm_trace: bool, limits: TraceLimits) -> Self {
        Guard {
            steps_left: usize::MAX,
            clock: evm::DeadlineInspector::new(limits.deadline),
            timeout: limits.timeout,
            max_bytes: limits.max_bytes,
            step_bytes: if vm_trace { 150 } else { 0 },
            per_stack_item: 0,
            per_memory_byte: 0,
            bytes: 0,
            too_large: false,
        }
    }

    /// Bytes the answer may still take.
    pub(crate) fn remaining(&self) -> usize {
        self.max_bytes.saturating_sub(self.bytes)
    }

    /// Counts what the tracers recorded themselves (call inputs, memory, return data), and whether one
    /// stopped recording at its budget.
    pub(crate) fn record(&mut self, bytes: usize, exceeded: bool) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.too_large |= exceeded || self.bytes > self.max_bytes;
    }

    pub(crate) fn check(&self) -> Result<(), TraceError> {
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
        if self.step_bytes > 0 && !self.too_large && self.steps_left > 0 {
            self.steps_left -= 1;
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
        assert!(matches!(Plan::new(&js), Err(TraceError::TracerNotFound(_))));
        for name in
            ["callTracer", "prestateTracer", "4byteTracer", "flatCallTracer", "noopTracer", "muxTracer"]
        {
            let opts: GethDebugTracingOptions =
                serde_json::from_value(serde_json::json!({"tracer": name})).unwrap();
            assert!(Plan::new(&opts).is_ok(), "{name}: {:?}", Plan::new(&opts).err());
        }
        assert!(Plan::new(&GethDebugTracingOptions::default()).is_ok());
        let mux: GethDebugTracingOptions = serde_json::from_value(serde_json::json!(
            {"tracer": "muxTracer", "tracerConfig": {"4byteTracer": {}, "callTracer": null, "noopTracer": {}}}
        ))
        .unwrap();
        assert!(Plan::new(&mux).is_ok(), "{:?}", Plan::new(&mux).err());
    }
}
