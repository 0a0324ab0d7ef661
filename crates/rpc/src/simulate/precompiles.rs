//! A simulated block's precompiles: the fork's set, less every address a state override names (its code,
//! if any, runs instead), with moved precompiles answering at their new addresses. Built per block, as geth
//! builds it: a move lasts one block.

use std::collections::{HashMap, HashSet};

use alloy_primitives::Address;
use revm::{
    context::Cfg,
    context_interface::ContextTr,
    handler::{EthPrecompiles, PrecompileProvider},
    interpreter::{CallInputs, InterpreterResult},
    primitives::{hardfork::SpecId, AddressSet},
};

pub struct SimPrecompiles {
    inner: EthPrecompiles,
    /// New address -> the precompile's own address.
    moved: HashMap<Address, Address>,
    /// Addresses that are no precompile in this block.
    disabled: HashSet<Address>,
}

impl SimPrecompiles {
    pub fn new(spec: SpecId) -> Self {
        SimPrecompiles { inner: EthPrecompiles::new(spec), moved: HashMap::new(), disabled: HashSet::new() }
    }

    /// Whether `address` is a precompile of this block (before any override).
    pub fn is_precompile(&self, address: &Address) -> bool {
        self.inner.contains(address)
    }

    /// An override names `address`: it is no precompile in this block.
    pub fn disable(&mut self, address: Address) {
        self.disabled.insert(address);
    }

    /// The precompile at `from` answers at `to` in this block.
    pub fn move_to(&mut self, from: Address, to: Address) {
        self.moved.insert(to, from);
    }
}

impl<CTX: ContextTr> PrecompileProvider<CTX> for SimPrecompiles
where
    EthPrecompiles: PrecompileProvider<CTX, Output = InterpreterResult>,
{
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: <CTX::Cfg as Cfg>::Spec) -> bool {
        <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.inner, spec)
    }

    fn run(&mut self, context: &mut CTX, inputs: &CallInputs) -> Result<Option<InterpreterResult>, String> {
        if let Some(own) = self.moved.get(&inputs.bytecode_address) {
            let mut moved = inputs.clone();
            moved.bytecode_address = *own;
            return self.inner.run(context, &moved);
        }
        if self.disabled.contains(&inputs.bytecode_address) {
            return Ok(None);
        }
        self.inner.run(context, inputs)
    }

    /// Warmed at the start of a transaction: the fork's standard set, as geth warms it.
    fn warm_addresses(&self) -> &AddressSet {
        <EthPrecompiles as PrecompileProvider<CTX>>::warm_addresses(&self.inner)
    }

    fn contains(&self, address: &Address) -> bool {
        self.moved.contains_key(address) || (self.inner.contains(address) && !self.disabled.contains(address))
    }
}
