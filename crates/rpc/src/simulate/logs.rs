//! The logs of a simulated call as geth collects them: the EVM's own logs and, with `traceTransfers`, a
//! synthetic ERC-7528 log for every value transfer, in execution order. A frame that fails drops the logs
//! it and its children collected. Each log takes the block's next log number when it is captured, and a
//! dropped log keeps its number used (the numbering the execution-apis fixtures expect). The EVM's own logs
//! also go to the receipt (the transfer logs never do), through revm's result.
//!
//! It also stops the EVM at the request's deadline, as `eth_call` does ([`crate::evm::DeadlineInspector`]).

use std::time::Instant;

use alloy_primitives::{address, b256, Address, Log, LogData, B256, U256};
use revm::{
    context_interface::ContextTr,
    interpreter::{
        interpreter::EthInterpreter, CallInputs, CallOutcome, CreateInputs, CreateOutcome, Interpreter,
    },
    Inspector,
};

use crate::evm::DeadlineInspector;

/// ERC-7528's pseudo-address for the native currency: where transfer logs come from.
pub const TRANSFER_ADDRESS: Address = address!("0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
/// `Transfer(address,address,uint256)`.
pub const TRANSFER_TOPIC: B256 = b256!("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// A captured log and the number it took in its block.
#[derive(Debug, Clone)]
pub struct Numbered {
    pub log: Log,
    pub index: u64,
}

pub struct SimInspector {
    trace_transfers: bool,
    /// The block's next log number (carried from call to call).
    pub next_index: u64,
    /// The logs kept so far in this call.
    pub logs: Vec<Numbered>,
    /// Where each open frame's logs start in `logs`.
    frames: Vec<usize>,
    /// Per open create frame, where its transfer log sits (its address is known only at the end).
    creates: Vec<Option<usize>>,
    pub(crate) deadline: DeadlineInspector,
}

impl SimInspector {
    pub fn new(trace_transfers: bool, next_index: u64, deadline: Instant) -> Self {
        SimInspector {
            trace_transfers,
            next_index,
            logs: Vec::new(),
            frames: Vec::new(),
            creates: Vec::new(),
            deadline: DeadlineInspector::new(deadline),
        }
    }

    fn push(&mut self, log: Log) -> usize {
        self.logs.push(Numbered { log, index: self.next_index });
        self.next_index += 1;
        self.logs.len() - 1
    }

    fn transfer(&mut self, from: Address, to: Address, value: U256) -> usize {
        let topics = vec![TRANSFER_TOPIC, from.into_word(), to.into_word()];
        let data = LogData::new_unchecked(topics, B256::from(value).0.to_vec().into());
        self.push(Log { address: TRANSFER_ADDRESS, data })
    }

    /// A frame ends: its logs stay if it succeeded, go if it failed.
    fn end(&mut self, ok: bool) {
        let start = self.frames.pop().unwrap_or(0);
        if !ok {
            self.logs.truncate(start);
        }
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for SimInspector {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        Inspector::<CTX, EthInterpreter>::step(&mut self.deadline, interp, context);
    }

    fn log(&mut self, _context: &mut CTX, log: Log) {
        self.push(log);
    }

    fn call(&mut self, _context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        self.frames.push(self.logs.len());
        // DELEGATECALL and CALLCODE move no value to another account: no transfer log (as geth).
        if self.trace_transfers && inputs.scheme.is_call() {
            if let Some(value) = inputs.transfer_value().filter(|v| !v.is_zero()) {
                self.transfer(inputs.transfer_from(), inputs.transfer_to(), value);
            }
        }
        None
    }

    fn call_end(&mut self, _context: &mut CTX, _inputs: &CallInputs, outcome: &mut CallOutcome) {
        self.end(outcome.result.result.is_ok());
    }

    fn create(&mut self, _context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.frames.push(self.logs.len());
        let log = (self.trace_transfers && !inputs.value().is_zero())
            // The new address is filled in at the end of the frame.
            .then(|| self.transfer(inputs.caller(), Address::ZERO, inputs.value()));
        self.creates.push(log);
        None
    }

    fn create_end(&mut self, _context: &mut CTX, _inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        if let (Some(Some(at)), Some(address)) = (self.creates.pop(), outcome.address) {
            if let Some(entry) = self.logs.get_mut(at) {
                let mut topics = entry.log.data.topics().to_vec();
                topics[2] = address.into_word();
                entry.log.data = LogData::new_unchecked(topics, entry.log.data.data.clone());
            }
        }
        self.end(outcome.result.result.is_ok());
    }

    fn selfdestruct(&mut self, contract: Address, target: Address, value: U256) {
        if self.trace_transfers && !value.is_zero() {
            self.transfer(contract, target, value);
        }
    }
}
