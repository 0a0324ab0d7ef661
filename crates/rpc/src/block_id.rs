//! Block parameters as the Ethereum execution APIs spell them, parsed without touching the store: tags,
//! numbers, and EIP-1898 objects.

use alloy_primitives::B256;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockSpec {
    /// Also what a missing or `null` block parameter means.
    #[default]
    Latest,
    /// Served as latest: a replica has no mempool (documented in docs/rpc.md).
    Pending,
    Earliest,
    Safe,
    Finalized,
    Number(u64),
    Hash {
        hash: B256,
        require_canonical: bool,
    },
}

impl<'de> serde::Deserialize<'de> for BlockSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::params::via_value(d, |v| parse(Some(v)))
    }
}

/// Parses one block parameter; a missing parameter means `latest`.
pub fn parse(v: Option<&Value>) -> Result<BlockSpec, String> {
    let Some(v) = v else { return Ok(BlockSpec::Latest) };
    match v {
        Value::Null => Ok(BlockSpec::Latest),
        Value::String(s) => match s.as_str() {
            "latest" => Ok(BlockSpec::Latest),
            "pending" => Ok(BlockSpec::Pending),
            "earliest" => Ok(BlockSpec::Earliest),
            "safe" => Ok(BlockSpec::Safe),
            "finalized" => Ok(BlockSpec::Finalized),
            s if s.len() == 66 => s
                .parse::<B256>()
                .map(|hash| BlockSpec::Hash { hash, require_canonical: false })
                .map_err(|e| e.to_string()),
            s => quantity(s).map(BlockSpec::Number),
        },
        Value::Object(o) => {
            if let Some(h) = o.get("blockHash") {
                let hash: B256 = serde_json::from_value(h.clone()).map_err(|e| format!("blockHash: {e}"))?;
                let require_canonical = o.get("requireCanonical").and_then(Value::as_bool).unwrap_or(false);
                Ok(BlockSpec::Hash { hash, require_canonical })
            } else if let Some(Value::String(n)) = o.get("blockNumber") {
                quantity(n).map(BlockSpec::Number)
            } else {
                Err("a block object needs blockHash or blockNumber".into())
            }
        }
        other => Err(format!("not a block number, tag or hash: {other}")),
    }
}

/// A hex quantity: `0x` and at least one digit (decimal strings are not block numbers in this API).
/// Leading zeros are refused, as geth refuses them.
fn quantity(s: &str) -> Result<u64, String> {
    let digits = crate::params::quantity_digits(s).map_err(|e| format!("not a hex block number: {e}"))?;
    u64::from_str_radix(digits, 16).map_err(|_| format!("not a hex block number: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_parameter_table() {
        let h = B256::repeat_byte(0xab);
        let cases: Vec<(Option<Value>, Result<BlockSpec, ()>)> = vec![
            (None, Ok(BlockSpec::Latest)),
            (Some(json!("latest")), Ok(BlockSpec::Latest)),
            (Some(json!("pending")), Ok(BlockSpec::Pending)),
            (Some(json!("earliest")), Ok(BlockSpec::Earliest)),
            (Some(json!("safe")), Ok(BlockSpec::Safe)),
            (Some(json!("finalized")), Ok(BlockSpec::Finalized)),
            (Some(json!("0x1b")), Ok(BlockSpec::Number(27))),
            (Some(json!({"blockNumber": "0x2"})), Ok(BlockSpec::Number(2))),
            (
                Some(json!({"blockHash": h, "requireCanonical": true})),
                Ok(BlockSpec::Hash { hash: h, require_canonical: true }),
            ),
            (Some(json!(h)), Ok(BlockSpec::Hash { hash: h, require_canonical: false })),
            (Some(json!("0xzz")), Err(())),
            (Some(json!("0x01")), Err(())),
            (Some(json!("0x00")), Err(())),
            (Some(json!("0x0")), Ok(BlockSpec::Number(0))),
            (Some(json!("12")), Err(())),
            (Some(json!(12)), Err(())),
            (Some(json!({})), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input.as_ref()).map_err(|_| ()), want, "{input:?}");
        }
    }
}
