//! Parameter types whose parsing the execution APIs (and geth) define more strictly than alloy's serde
//! does. Each deserializes straight from the request (the namespace traits take them as typed arguments);
//! a failure answers -32602 ([`crate::middleware`] gives it the execution APIs' shape).
//!
//! Block parameters are [`crate::block_id::BlockSpec`], log filters [`crate::logs::Filter`]: both
//! deserialize through the same parsers the subscriptions use.

use alloy_primitives::{B256, U256, U64};
use serde::{de::Error as _, Deserialize, Deserializer};

/// A 32-byte hash, `0x`-prefixed as the execution APIs require (geth refuses it without; alloy accepts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hash(pub B256);

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if !s.starts_with("0x") {
            return Err(D::Error::custom("hex string without 0x prefix"));
        }
        s.parse().map(Hash).map_err(D::Error::custom)
    }
}

/// A storage key: hex of at most 32 bytes (shorter is left-padded), as geth takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageKey(pub B256);

impl StorageKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0x").ok_or_else(|| format!("storage key without 0x: {s:?}"))?;
        if digits.len() > 64 {
            return Err(format!("storage key too long (want at most 32 bytes): {s:?}"));
        }
        let value = U256::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16)
            .map_err(|e| format!("storage key {s:?}: {e}"))?;
        Ok(StorageKey(B256::from(value)))
    }
}

impl<'de> Deserialize<'de> for StorageKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StorageKey::parse(&s).map_err(D::Error::custom)
    }
}

/// `eth_feeHistory`'s block count: a JSON number or a hex quantity, as geth takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCount(pub u64);

impl<'de> Deserialize<'de> for BlockCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Quantity(U64),
        }
        match Either::deserialize(d) {
            Ok(Either::Number(n)) => Ok(BlockCount(n)),
            Ok(Either::Quantity(q)) => Ok(BlockCount(q.to())),
            Err(_) => Err(D::Error::custom("blockCount: not a number or hex quantity")),
        }
    }
}

/// The digits of a hex quantity as geth's `hexutil` reads them: `0x`, at least one digit, and no leading zero
/// (`0x0` is zero; `0x01` is refused, as geth refuses it, where alloy's serde takes it).
pub fn quantity_digits(s: &str) -> Result<&str, String> {
    let digits = s.strip_prefix("0x").ok_or_else(|| format!("hex string without 0x prefix: {s:?}"))?;
    if digits.is_empty() {
        return Err("hex string \"0x\"".into());
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("hex number with leading zero digits".into());
    }
    Ok(digits)
}

/// A quantity parameter read strictly ([`quantity_digits`]): a transaction's index in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub u64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digits = quantity_digits(&s).map_err(D::Error::custom)?;
        u64::from_str_radix(digits, 16).map(Quantity).map_err(D::Error::custom)
    }
}

/// `#[serde(default, deserialize_with = "strict_u64")]`: an optional 64-bit quantity of a call object or an
/// override, read strictly ([`quantity_digits`]).
pub fn strict_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U64>, D::Error> {
    let Some(s) = Option::<std::borrow::Cow<'de, str>>::deserialize(d)? else { return Ok(None) };
    let digits = quantity_digits(&s).map_err(D::Error::custom)?;
    U64::from_str_radix(digits, 16).map(Some).map_err(D::Error::custom)
}

/// As [`strict_u64`], for a 256-bit quantity.
pub fn strict_u256<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
    let Some(s) = Option::<std::borrow::Cow<'de, str>>::deserialize(d)? else { return Ok(None) };
    let digits = quantity_digits(&s).map_err(D::Error::custom)?;
    U256::from_str_radix(digits, 16).map(Some).map_err(D::Error::custom)
}

/// Deserializes through a `serde_json::Value` and a parser of it (for parameters whose shape is checked
/// by hand: block parameters, log filters).
pub(crate) fn via_value<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&serde_json::Value) -> Result<T, String>,
) -> Result<T, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    parse(&v).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_need_their_prefix() {
        let h = B256::repeat_byte(0xab);
        assert_eq!(serde_json::from_value::<Hash>(json!(h)).ok(), Some(Hash(h)));
        let bare = h.to_string().trim_start_matches("0x").to_owned();
        assert!(serde_json::from_value::<Hash>(json!(bare)).is_err());
        assert!(serde_json::from_value::<Hash>(json!("0x12")).is_err());
    }

    #[test]
    fn storage_key_table() {
        let one = B256::from(U256::from(1));
        let cases: Vec<(serde_json::Value, Option<B256>)> = vec![
            (json!("0x1"), Some(one)),
            (json!("0x01"), Some(one)),
            (json!("0x"), Some(B256::ZERO)),
            (json!(format!("0x{}", "0".repeat(63) + "1")), Some(one)),
            (json!(format!("0x{}", "0".repeat(65))), None),
            (json!("1"), None),
            (json!("0xzz"), None),
            (json!(1), None),
        ];
        for (input, want) in cases {
            assert_eq!(
                serde_json::from_value::<StorageKey>(input.clone()).ok().map(|k| k.0),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn quantities_are_read_as_geth_reads_them() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(default, deserialize_with = "strict_u64")]
            q: Option<U64>,
        }
        #[rustfmt::skip]
        let cases: Vec<(serde_json::Value, Option<Option<u64>>)> = vec![
            (json!({"q": "0x0"}),   Some(Some(0))),
            (json!({"q": "0x1b"}),  Some(Some(27))),
            (json!({}),             Some(None)),
            (json!({"q": null}),    Some(None)),
            (json!({"q": "0x01"}),  None),
            (json!({"q": "0x00"}),  None),
            (json!({"q": "0x"}),    None),
            (json!({"q": "12"}),    None),
            (json!({"q": 12}),      None),
        ];
        for (input, want) in cases {
            let got = serde_json::from_value::<Q>(input.clone()).ok().map(|q| q.q.map(|v| v.to::<u64>()));
            assert_eq!(got, want, "{input}");
        }
        assert_eq!(serde_json::from_value::<Quantity>(json!("0x10")).ok(), Some(Quantity(16)));
        assert!(serde_json::from_value::<Quantity>(json!("0x010")).is_err());
    }

    #[test]
    fn block_count_table() {
        let cases = [(json!(5), Some(5)), (json!("0x5"), Some(5)), (json!(-1), None), (json!("zz"), None)];
        for (input, want) in cases {
            assert_eq!(
                serde_json::from_value::<BlockCount>(input.clone()).ok().map(|c| c.0),
                want,
                "{input}"
            );
        }
    }
}
