//! Streaming readers of the two JSONL state dump formats.
//!
//! **geth** (`geth snapshot dump`, cmd/geth/snapshot.go `dumpState`): a first line `{"root":"0x…"}`, then one
//! object per account in ascending hashed-address order, fields in this order: `balance` (decimal string),
//! `nonce` (number), `root` (storage root), `codeHash`, `code` (absent without code), `storage` (object of
//! hashed slot → value), `address` (newer versions, when the preimage is known), `key` (the hashed
//! address). A storage value is the hex, without `0x`, of the *RLP encoding* of the value's minimal
//! big-endian bytes: it comes straight from the snapshot, which stores slots RLP-encoded (geth's own
//! `flatReader.Storage` RLP-splits them on read). `geth dump` (the trie dump, core/state/dump.go) is a
//! different format: its storage is keyed by preimage and collapses to one zero key without preimages, and
//! it is not read here. Go's encoder sorts map keys, so each storage object is in ascending hashed order.
//!
//! **reth** (`reth init-state`, crates/storage/db-common/src/init.rs): a first line `{"root":"0x…"}`, then
//! alloy `GenesisAccount` objects with an `address`: `balance` (a `U256`: `0x` hex or decimal), `nonce`
//! (optional; number or `0x` quantity), `code` (optional hex), `storage` (optional object of *plain* slot →
//! value, both hex of at most 32 bytes, left-padded). Other fields are ignored. Any order of accounts.
//!
//! Lines can be gigabytes (the largest contracts' storage), so nothing holds a whole line: a serde visitor
//! hands each storage entry to the sink as it is parsed. geth writes `key` after `storage`, so the hashed
//! address is not known while the slots go by; they wait in a bounded buffer that spills to a scratch file.

use std::{
    fmt,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
    str::FromStr,
};

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY};
use ec_store::tables::StoredAccount;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::{
    error::{io, ImportError, Result},
    writer::code_hash,
    StateSink,
};

/// Which dump format a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `geth snapshot dump`: hashed keys, sorted.
    GethSnapshot,
    /// `reth init-state`: plain addresses and slots, any order.
    RethInitState,
}

/// Slots kept in memory while an account's hashed address is not yet known; beyond, they go to disk.
pub const DEFAULT_PENDING_SLOTS: usize = 1 << 16;

/// Streams the dump at `path` into `sink`. Returns the root the dump's first line declares, if it has one.
/// `scratch` is a directory for slots that wait for their account's key.
pub fn read_dump(
    format: DumpFormat,
    path: &Path,
    sink: &mut dyn StateSink,
    scratch: &Path,
    pending_limit: usize,
) -> Result<Option<B256>> {
    let file = File::open(path).map_err(io(path))?;
    read_dump_from(format, file, path, sink, scratch, pending_limit)
}

/// [`read_dump`] from any reader; `path` names the source in errors.
pub(crate) fn read_dump_from(
    format: DumpFormat,
    reader: impl Read,
    path: &Path,
    sink: &mut dyn StateSink,
    scratch: &Path,
    pending_limit: usize,
) -> Result<Option<B256>> {
    let reader = BufReader::with_capacity(1 << 20, reader);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let json = |source| ImportError::Json { path: path.to_path_buf(), source };
    let mut ctx = Ctx {
        format,
        sink,
        pending: PendingSlots::new(scratch.join("pending-slots.bin"), pending_limit),
        error: None,
        index: 0,
    };
    let mut root = None;
    loop {
        // `end` succeeds only at the end of input; any other byte is the start of the next object.
        match de.end() {
            Ok(()) => break,
            Err(e) if e.is_io() => return Err(json(e)),
            Err(_) => {}
        }
        match (LineSeed { ctx: &mut ctx }).deserialize(&mut de) {
            Ok(Line::Root(r)) if ctx.index == 0 && root.is_none() => root = Some(r),
            Ok(Line::Root(r)) => {
                return Err(ImportError::BadAccount {
                    account: format!("#{}", ctx.index),
                    reason: format!("a second state root line ({r}) in the middle of the dump"),
                })
            }
            Ok(Line::Account) => ctx.index += 1,
            Err(e) => return Err(ctx.error.take().unwrap_or_else(|| json(e))),
        }
    }
    ctx.pending.remove_file();
    Ok(root)
}

struct Ctx<'s> {
    format: DumpFormat,
    sink: &'s mut dyn StateSink,
    pending: PendingSlots,
    /// The real error behind the string a serde error can carry, so the caller sees its type and context.
    error: Option<ImportError>,
    /// Accounts read so far, to name an account without an address in messages.
    index: u64,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&mut self, err: ImportError) -> E {
        let msg = err.to_string();
        self.error = Some(err);
        E::custom(msg)
    }
}

enum Line {
    Root(B256),
    Account,
}

struct LineSeed<'c, 's> {
    ctx: &'c mut Ctx<'s>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, '_> {
    type Value = Line;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Line, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, '_> {
    type Value = Line;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an account object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
        let ctx = self.ctx;
        let format = ctx.format;
        let (mut balance, mut nonce, mut storage_root, mut code_hash_field) = (None, 0u64, None, None);
        let (mut code, mut address, mut key): (Option<Bytes>, Option<Address>, Option<B256>) =
            (None, None, None);
        let mut has_storage = false;
        let mut other_fields = false;
        ctx.pending.clear();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Balance => balance = Some(map.next_value::<Quantity256>()?.0),
                Field::Nonce => nonce = map.next_value::<Quantity64>()?.0,
                Field::Root => storage_root = Some(map.next_value::<B256>()?),
                Field::CodeHash => code_hash_field = Some(map.next_value::<B256>()?),
                Field::Code => code = map.next_value::<Option<Bytes>>()?,
                Field::Address => address = map.next_value::<Option<Address>>()?,
                Field::Key => key = map.next_value::<Option<B256>>()?,
                Field::Storage => {
                    has_storage = true;
                    // Stream straight to the sink when the account's key came before its storage.
                    let hashed = match format {
                        DumpFormat::GethSnapshot => key.or_else(|| address.map(keccak256)),
                        DumpFormat::RethInitState => address.map(keccak256),
                    };
                    map.next_value_seed(StorageSeed { ctx: &mut *ctx, hashed })?;
                }
                Field::Other => {
                    other_fields = true;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        let is_account =
            balance.is_some() || address.is_some() || key.is_some() || has_storage || other_fields;
        if !is_account {
            if let Some(root) = storage_root {
                return Ok(Line::Root(root));
            }
        }

        let name = match (address, key) {
            (Some(a), _) => a.to_string(),
            (None, Some(k)) => format!("key {k}"),
            (None, None) => format!("#{}", ctx.index),
        };
        let bad = |reason: String| ImportError::BadAccount { account: name.clone(), reason };
        let hashed = match (format, key, address) {
            (DumpFormat::GethSnapshot, Some(k), _) => k,
            (_, _, Some(a)) => keccak256(a),
            (DumpFormat::GethSnapshot, None, None) => {
                return Err(ctx.fail(bad("neither `key` nor `address`".into())))
            }
            (DumpFormat::RethInitState, _, None) => return Err(ctx.fail(bad("no `address`".into()))),
        };
        let Some(balance) = balance else { return Err(ctx.fail(bad("no `balance`".into()))) };
        let code = code.filter(|c| !c.is_empty());
        let code_hash = match (format, code_hash_field, &code) {
            (DumpFormat::GethSnapshot, declared, Some(code)) => {
                let actual = code_hash(code);
                if declared.is_some_and(|d| d != actual) {
                    return Err(ctx.fail(bad(format!("code hashes to {actual}, not to its codeHash"))));
                }
                actual
            }
            (DumpFormat::GethSnapshot, Some(declared), None) if declared != KECCAK_EMPTY => {
                return Err(ctx.fail(bad(format!(
                    "codeHash {declared} but no code: a dump made with --nocode cannot be imported"
                ))));
            }
            (_, _, Some(code)) => code_hash(code),
            (_, _, None) => KECCAK_EMPTY,
        };
        if format == DumpFormat::GethSnapshot
            && !has_storage
            && storage_root.is_some_and(|r| r != EMPTY_ROOT_HASH)
        {
            return Err(ctx.fail(bad(
                "non-empty storage root but no storage: a dump made with --nostorage cannot be imported"
                    .into(),
            )));
        }

        let account = StoredAccount { balance, nonce, code_hash };
        if let Err(e) = ctx.sink.account(hashed, account, code) {
            return Err(ctx.fail(e));
        }
        if let Err(e) = ctx.pending.drain(hashed, &mut *ctx.sink) {
            return Err(ctx.fail(e));
        }
        Ok(Line::Account)
    }
}

struct StorageSeed<'c, 's> {
    ctx: &'c mut Ctx<'s>,
    hashed: Option<B256>,
}

impl<'de> DeserializeSeed<'de> for StorageSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for StorageSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a storage object")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        while let Some(slot) = map.next_key::<HexWord>()? {
            let raw = map.next_value::<HexWord>()?;
            let (hashed_slot, value) = match ctx.format {
                DumpFormat::GethSnapshot => {
                    if slot.len != 32 {
                        return Err(de::Error::custom(format!(
                            "storage key of {} bytes: a geth snapshot dump keys slots by their 32-byte hash",
                            slot.len
                        )));
                    }
                    (B256::from_slice(slot.bytes()), rlp_slot_value(raw.bytes()).map_err(de::Error::custom)?)
                }
                DumpFormat::RethInitState => (
                    keccak256(slot.padded().map_err(de::Error::custom)?),
                    raw.padded().map_err(de::Error::custom)?,
                ),
            };
            if value.is_zero() {
                continue;
            }
            let result = match self.hashed {
                Some(hashed) => ctx.sink.slot(hashed, hashed_slot, value),
                None => ctx.pending.push(hashed_slot, value),
            };
            if let Err(e) = result {
                return Err(ctx.fail(e));
            }
        }
        Ok(())
    }
}

/// Decodes a geth snapshot slot value: the RLP string of the value's minimal big-endian bytes.
fn rlp_slot_value(raw: &[u8]) -> Result<B256, String> {
    let content = match raw {
        [] => return Err("empty storage value (expected RLP)".into()),
        [b] if *b < 0x80 => raw,
        [0x80] => &[],
        [prefix, rest @ ..] if (0x81..=0xa0).contains(prefix) && rest.len() == (*prefix - 0x80) as usize => {
            rest
        }
        _ => {
            return Err(format!(
                "storage value {} is not an RLP string of at most 32 bytes (geth's snapshot dump writes \
                 slot values RLP-encoded)",
                alloy_primitives::hex::encode(raw)
            ))
        }
    };
    let mut word = [0u8; 32];
    word[32 - content.len()..].copy_from_slice(content);
    Ok(B256::from(word))
}

/// A hex string of at most 33 bytes (an RLP-encoded word), with or without `0x`, odd length allowed.
struct HexWord {
    buf: [u8; 33],
    len: usize,
}

impl HexWord {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn padded(&self) -> Result<B256, String> {
        if self.len > 32 {
            return Err(format!("{} bytes where at most 32 fit", self.len));
        }
        let mut word = [0u8; 32];
        word[32 - self.len..].copy_from_slice(self.bytes());
        Ok(B256::from(word))
    }

    fn parse(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s).as_bytes();
        let len = digits.len().div_ceil(2);
        if len > 33 {
            return Err(format!("hex string of {} digits is too long for a storage word", digits.len()));
        }
        let mut buf = [0u8; 33];
        // An odd number of digits is read as if it had a leading zero.
        let odd = digits.len() % 2;
        for (i, c) in digits.iter().enumerate() {
            let nibble = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(format!("{s:?} is not hex")),
            };
            let pos = i + odd;
            buf[pos / 2] |= if pos.is_multiple_of(2) { nibble << 4 } else { nibble };
        }
        Ok(Self { buf, len })
    }
}

impl<'de> Deserialize<'de> for HexWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HexWord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a hex string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HexWord, E> {
                HexWord::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A U256 as a decimal or `0x` hex string, or a JSON number.
struct Quantity256(U256);

impl<'de> Deserialize<'de> for Quantity256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity256;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal or 0x-hex number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity256, E> {
                Ok(Quantity256(U256::from(v)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity256, E> {
                U256::from_str(s).map(Quantity256).map_err(|e| E::custom(format!("{s:?}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A u64 as a JSON number, or a decimal or `0x` hex string.
struct Quantity64(u64);

impl<'de> Deserialize<'de> for Quantity64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity64, E> {
                Ok(Quantity64(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity64, E> {
                let parsed = match s.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => s.parse(),
                };
                parsed.map(Quantity64).map_err(|e| E::custom(format!("{s:?}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

enum Field {
    Balance,
    Nonce,
    Root,
    CodeHash,
    Code,
    Storage,
    Address,
    Key,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                Ok(match s {
                    "balance" => Field::Balance,
                    "nonce" => Field::Nonce,
                    "root" => Field::Root,
                    "codeHash" => Field::CodeHash,
                    "code" => Field::Code,
                    "storage" => Field::Storage,
                    "address" => Field::Address,
                    "key" => Field::Key,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Slots read before their account's hashed address: the first `limit` in memory, the rest in a scratch
/// file, replayed in arrival order (which keeps a sorted dump sorted).
struct PendingSlots {
    memory: Vec<(B256, B256)>,
    limit: usize,
    path: PathBuf,
    spill: Option<BufWriter<File>>,
    spilled: u64,
}

impl PendingSlots {
    fn new(path: PathBuf, limit: usize) -> Self {
        Self { memory: Vec::new(), limit, path, spill: None, spilled: 0 }
    }

    fn clear(&mut self) {
        self.memory.clear();
        self.spill = None;
        self.spilled = 0;
    }

    fn push(&mut self, slot: B256, value: B256) -> Result<()> {
        if self.memory.len() < self.limit {
            self.memory.push((slot, value));
            return Ok(());
        }
        if self.spill.is_none() {
            let file = File::create(&self.path).map_err(io(&self.path))?;
            self.spill = Some(BufWriter::with_capacity(1 << 20, file));
        }
        if let Some(out) = self.spill.as_mut() {
            out.write_all(slot.as_slice()).map_err(io(&self.path))?;
            out.write_all(value.as_slice()).map_err(io(&self.path))?;
        }
        self.spilled += 1;
        Ok(())
    }

    fn drain(&mut self, hashed: B256, sink: &mut dyn StateSink) -> Result<()> {
        for (slot, value) in self.memory.drain(..) {
            sink.slot(hashed, slot, value)?;
        }
        if let Some(mut out) = self.spill.take() {
            out.flush().map_err(io(&self.path))?;
            drop(out);
            let mut input =
                BufReader::with_capacity(1 << 20, File::open(&self.path).map_err(io(&self.path))?);
            let mut record = [0u8; 64];
            for _ in 0..self.spilled {
                input.read_exact(&mut record).map_err(io(&self.path))?;
                sink.slot(hashed, B256::from_slice(&record[..32]), B256::from_slice(&record[32..]))?;
            }
        }
        self.spilled = 0;
        Ok(())
    }

    fn remove_file(&mut self) {
        self.spill = None;
        // Absent unless some account had more slots than fit in memory.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_values_are_rlp_strings() {
        assert_eq!(rlp_slot_value(&[0x01]).ok(), Some(B256::with_last_byte(1)));
        assert_eq!(rlp_slot_value(&[0x81, 0x80]).ok(), Some(B256::with_last_byte(0x80)));
        let mut full = vec![0xa0];
        full.extend([0xff; 32]);
        assert_eq!(rlp_slot_value(&full).ok(), Some(B256::repeat_byte(0xff)));
        assert!(rlp_slot_value(&[0x82, 0x01]).is_err());
        assert!(rlp_slot_value(&[0x81]).is_err());
    }

    #[test]
    fn hex_words_take_odd_lengths_and_prefixes() {
        let w = HexWord::parse("0x123").map_err(|e| e.to_string());
        assert_eq!(w.map(|w| w.bytes().to_vec()).ok(), Some(vec![0x01, 0x23]));
        let w = HexWord::parse("ff").map_err(|e| e.to_string());
        assert_eq!(w.map(|w| w.bytes().to_vec()).ok(), Some(vec![0xff]));
        assert!(HexWord::parse("0xzz").is_err());
    }
}
