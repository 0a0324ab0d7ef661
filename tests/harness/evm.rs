//! A few-line EVM assembler for the contracts the tests deploy (no compiler on the test machines), and the
//! contracts of the self-destruct scenario (`tests/publisher.rs`).

use alloy_primitives::{hex, keccak256, Address, B256};

use super::script::{INIT_PREFIX, RUNTIME};

/// One item of a program: an opcode, a push of bytes, a jump destination, or a push of one's offset.
pub enum Op {
    Code(u8),
    Push(Vec<u8>),
    Label(&'static str),
    /// PUSH2 of a label's offset.
    To(&'static str),
}

pub const STOP: u8 = 0x00;
pub const ISZERO: u8 = 0x15;
pub const CALLDATALOAD: u8 = 0x35;
pub const CALLVALUE: u8 = 0x34;
pub const CODECOPY: u8 = 0x39;
pub const POP: u8 = 0x50;
pub const MSTORE: u8 = 0x52;
pub const SSTORE: u8 = 0x55;
pub const JUMP: u8 = 0x56;
pub const JUMPI: u8 = 0x57;
pub const GAS: u8 = 0x5a;
pub const DUP1: u8 = 0x80;
pub const CREATE: u8 = 0xf0;
pub const CALL: u8 = 0xf1;
pub const RETURN: u8 = 0xf3;
pub const CREATE2: u8 = 0xf5;
pub const REVERT: u8 = 0xfd;

pub fn push(v: u64) -> Op {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    Op::Push(bytes[first..].to_vec())
}

/// Bytecode for `ops`, labels resolved (every label push is a PUSH2).
pub fn assemble(ops: &[Op]) -> Vec<u8> {
    let size = |op: &Op| match op {
        Op::Code(_) | Op::Label(_) => 1,
        Op::Push(b) => 1 + b.len(),
        Op::To(_) => 3,
    };
    let mut labels = std::collections::BTreeMap::new();
    let mut at = 0;
    for op in ops {
        if let Op::Label(name) = op {
            labels.insert(*name, at);
        }
        at += size(op);
    }
    let mut out = Vec::with_capacity(at);
    for op in ops {
        match op {
            Op::Code(c) => out.push(*c),
            Op::Label(_) => out.push(0x5b),
            Op::Push(b) => {
                assert!(!b.is_empty() && b.len() <= 32, "a push of 1 to 32 bytes");
                out.push(0x5f + b.len() as u8);
                out.extend_from_slice(b);
            }
            Op::To(name) => {
                let to = u16::try_from(*labels.get(name).unwrap_or_else(|| panic!("no label {name}")))
                    .expect("a label within 64 KiB");
                out.push(0x61);
                out.extend_from_slice(&to.to_be_bytes());
            }
        }
    }
    out
}

/// Init code that deploys `runtime` as is.
pub fn deployable(runtime: &[u8]) -> Vec<u8> {
    let len = runtime.len() as u64;
    let ctor = |ctor_len: u64| {
        use Op::Code;
        assemble(&[push(len), push(ctor_len), push(0), Code(CODECOPY), push(len), push(0), Code(RETURN)])
    };
    let guess = ctor(0).len() as u64;
    let mut code = ctor(guess);
    assert_eq!(code.len() as u64, guess, "the constructor's length does not depend on its own offset");
    code.extend_from_slice(runtime);
    code
}

/// The storage contract's init code ([`INIT_PREFIX`] and [`RUNTIME`]): the factory's children.
pub fn child_init() -> Vec<u8> {
    hex::decode(format!("{INIT_PREFIX}{RUNTIME}")).expect("hex")
}

/// The wrapper: calls the address in calldata word 0 with one byte (the child's "self-destruct to the
/// caller"), then reverts if calldata word 1 is non-zero: a self-destruct inside a frame that reverts.
pub fn wrapper_runtime() -> Vec<u8> {
    use Op::{Code, Label, To};
    assemble(&[
        push(0),
        push(0),
        push(1),
        push(0),
        push(0),
        push(0),
        Code(CALLDATALOAD),
        Code(GAS),
        Code(CALL),
        Code(POP),
        push(0x20),
        Code(CALLDATALOAD),
        To("revert"),
        Code(JUMPI),
        Code(STOP),
        Label("revert"),
        push(0),
        Code(DUP1),
        Code(REVERT),
    ])
}

/// The factory: creates a child ([`child_init`], with the call's value) by CREATE2 with the salt in
/// calldata word 0, or by CREATE when it is zero; stores the child's address in slot 0; then calls the
/// wrapper named in word 1 with (child, word 2): the child self-destructs, in a frame that reverts when word 2
/// is non-zero. The child's init code follows the runtime.
pub fn factory_runtime() -> Vec<u8> {
    let init = child_init();
    let program = |init_at: u64| {
        use Op::{Code, Label, To};
        let len = init.len() as u64;
        let mut code = assemble(&[
            push(len),
            Op::Push((init_at as u16).to_be_bytes().to_vec()),
            push(0),
            Code(CODECOPY),
            push(0),
            Code(CALLDATALOAD),
            Code(DUP1),
            Code(ISZERO),
            To("create"),
            Code(JUMPI),
            push(len),
            push(0),
            Code(CALLVALUE),
            Code(CREATE2),
            To("created"),
            Code(JUMP),
            Label("create"),
            Code(POP),
            push(len),
            push(0),
            Code(CALLVALUE),
            Code(CREATE),
            Label("created"),
            Code(DUP1),
            push(0),
            Code(SSTORE),
            push(0x200),
            Code(MSTORE),
            push(0x40),
            Code(CALLDATALOAD),
            push(0x220),
            Code(MSTORE),
            push(0),
            push(0),
            push(0x40),
            push(0x200),
            push(0),
            push(0x20),
            Code(CALLDATALOAD),
            Code(GAS),
            Code(CALL),
            Code(POP),
            Code(STOP),
        ]);
        let runtime_len = code.len() as u64;
        code.extend_from_slice(&init);
        (code, runtime_len)
    };
    let (_, runtime_len) = program(0x100);
    let (code, check) = program(runtime_len);
    assert_eq!(check, runtime_len, "pushes are sized by value: the offset must not change the length");
    code
}

/// The factory's calldata: CREATE2 with `salt` (CREATE when zero), then the child's self-destruct through
/// `wrapper`, reverted or not.
pub fn factory_call(salt: u64, wrapper: Address, revert: bool) -> String {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(B256::from(alloy_primitives::U256::from(salt)).as_slice());
    data.extend_from_slice(wrapper.into_word().as_slice());
    data.extend_from_slice(B256::from(alloy_primitives::U256::from(u64::from(revert))).as_slice());
    format!("0x{}", hex::encode(data))
}

/// Where the factory's CREATE2 with `salt` puts its child.
pub fn factory_child2(factory: Address, salt: u64) -> Address {
    factory.create2(B256::from(alloy_primitives::U256::from(salt)), keccak256(child_init()))
}
