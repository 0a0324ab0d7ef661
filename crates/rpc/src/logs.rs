//! `eth_getLogs`: candidate blocks from the log index (by address and by topic), then an exact filter over
//! those blocks' logs only. A filter with neither address nor topics has no index to use and reads every block
//! of its range, which the range cap bounds.

use std::collections::BTreeSet;

use alloy_primitives::{Address, B256};
use alloy_rpc_types_eth::Log;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde_json::Value;

use crate::{block_id, block_id::BlockSpec, convert, server_error, Req};
use ec_store::Reads;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub range: Range,
    /// Any of these addresses; empty matches all.
    pub addresses: Vec<Address>,
    /// Per position: any of these topics; an empty set matches anything.
    pub topics: Vec<Vec<B256>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Blocks { from: BlockSpec, to: BlockSpec },
    Hash(B256),
}

impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::params::via_value(d, parse_filter)
    }
}

fn one_or_many<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<Vec<T>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| serde_json::from_value(i.clone()).map_err(|e| format!("{what}: {e}")))
            .collect(),
        one => serde_json::from_value(one.clone()).map(|x| vec![x]).map_err(|e| format!("{what}: {e}")),
    }
}

impl Filter {
    /// Every log (a `logs` subscription without a filter).
    pub fn any() -> Self {
        Filter {
            range: Range::Blocks { from: BlockSpec::Latest, to: BlockSpec::Latest },
            addresses: vec![],
            topics: vec![],
        }
    }
}

pub fn parse_filter(v: &Value) -> Result<Filter, String> {
    let o = v.as_object().ok_or("the filter must be an object")?;
    let range = match o.get("blockHash") {
        Some(h) if !h.is_null() => {
            if o.get("fromBlock").is_some_and(|x| !x.is_null())
                || o.get("toBlock").is_some_and(|x| !x.is_null())
            {
                return Err("blockHash cannot be combined with fromBlock/toBlock".into());
            }
            Range::Hash(serde_json::from_value(h.clone()).map_err(|e| format!("blockHash: {e}"))?)
        }
        _ => Range::Blocks {
            from: block_id::parse(o.get("fromBlock"))?,
            to: block_id::parse(o.get("toBlock"))?,
        },
    };
    let addresses = one_or_many(o.get("address").unwrap_or(&Value::Null), "address")?;
    let topics = match o.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(positions)) => {
            positions.iter().map(|p| one_or_many(p, "topics")).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err("topics must be an array".into()),
    };
    if topics.len() > 4 {
        return Err(format!("{} topic positions; a log has at most 4", topics.len()));
    }
    Ok(Filter { range, addresses, topics })
}

pub fn matches(f: &Filter, address: &Address, topics: &[B256]) -> bool {
    (f.addresses.is_empty() || f.addresses.contains(address))
        && f.topics
            .iter()
            .enumerate()
            .all(|(i, any)| any.is_empty() || topics.get(i).is_some_and(|t| any.contains(t)))
}

/// -32005: a limit was hit; the message says which and how to stay under it.
fn limit(msg: String) -> ErrorObjectOwned {
    ErrorObject::owned(-32005, msg, None::<()>)
}

/// The logs `f` selects, read in one view. With a `budget`, `None` once the scan runs past it (the caller
/// runs it again without one, elsewhere).
pub(crate) fn get_logs(
    c: &Req,
    f: &Filter,
    budget: Option<std::time::Instant>,
) -> Result<Option<Vec<Log>>, ErrorObjectOwned> {
    let (from, to) = match f.range {
        Range::Hash(h) => {
            let b = c.block(&h)?;
            let b = b.ok_or_else(|| server_error(format!("block {h} not found")))?;
            (b.number, b.number)
        }
        Range::Blocks { from, to } => {
            // A range reaching past the head is the caller's mistake (-32602), as geth answers it.
            let head = c.resolve(BlockSpec::Latest)?;
            for spec in [from, to] {
                if matches!(spec, BlockSpec::Number(n) if n > head) {
                    return Err(crate::invalid_params("block range extends beyond current head block"));
                }
            }
            (c.resolve(from)?, c.resolve(to)?)
        }
    };
    if from > to {
        return Err(crate::invalid_params(format!("fromBlock {from} is after toBlock {to}")));
    }
    // A cluster started at a checkpoint holds no block before it: a range reaching below it is answered as
    // geth answers pruned history (4444, naming the first block), never with the logs it holds (an indexer
    // would conclude that no earlier event exists). `earliest` names the first block.
    let first = c.first_block()?;
    if from < first {
        return Err(crate::error::pruned_history(first));
    }
    let span = to - from + 1;
    if span > c.limits.max_log_block_range {
        return Err(limit(format!(
            "block range too large: {span} blocks, the limit is {}; query a narrower range",
            c.limits.max_log_block_range
        )));
    }
    // Candidate blocks: the intersection of every constraint the index can answer.
    let mut candidates: Option<BTreeSet<u64>> = None;
    let mut narrow = |set: BTreeSet<u64>| {
        candidates = Some(match candidates.take() {
            Some(c) => c.intersection(&set).copied().collect(),
            None => set,
        });
    };
    if !f.addresses.is_empty() {
        let mut set = BTreeSet::new();
        for a in &f.addresses {
            set.extend(c.view.log_blocks_by_address(a, from, to).map_err(server_error)?);
        }
        narrow(set);
    }
    for any in f.topics.iter().filter(|t| !t.is_empty()) {
        let mut set = BTreeSet::new();
        for t in any {
            set.extend(c.view.log_blocks_by_topic(t, from, to).map_err(server_error)?);
        }
        narrow(set);
    }
    let blocks: Box<dyn Iterator<Item = u64>> = match candidates {
        Some(set) => Box::new(set.into_iter()),
        None => Box::new(from..=to),
    };
    let mut out = Vec::new();
    for n in blocks {
        if budget.is_some_and(|b| std::time::Instant::now() >= b) {
            return Ok(None);
        }
        let Some(hash) = c.view.canonical_hash(n).map_err(server_error)? else { continue };
        let Some(b) = c.block(&hash)? else { continue };
        out.extend(convert::logs_where(&b, |address, topics| matches(f, address, topics)));
        if out.len() > c.limits.max_logs {
            return Err(limit(format!(
                "query returned more than {} logs; query a narrower range or add filters",
                c.limits.max_logs
            )));
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_parsing_table() {
        let a = Address::repeat_byte(1);
        let t = B256::repeat_byte(2);
        let ok = |v: Value| parse_filter(&v).expect("parses");
        assert_eq!(ok(json!({})).range, Range::Blocks { from: BlockSpec::Latest, to: BlockSpec::Latest });
        assert_eq!(ok(json!({"address": a})).addresses, vec![a]);
        assert_eq!(ok(json!({"address": [a, a]})).addresses, vec![a, a]);
        assert_eq!(ok(json!({"topics": [null, t, [t, t]]})).topics, vec![vec![], vec![t], vec![t, t]]);
        assert_eq!(ok(json!({"blockHash": t})).range, Range::Hash(t));
        for bad in [
            json!([]),
            json!({"blockHash": t, "fromBlock": "0x1"}),
            json!({"topics": "x"}),
            json!({"address": 5}),
            json!({"topics": [null, null, null, null, null]}),
        ] {
            assert!(parse_filter(&bad).is_err(), "{bad}");
        }
    }
}
