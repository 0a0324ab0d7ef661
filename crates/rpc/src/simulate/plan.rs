//! The simulated chain's shape, before anything runs: which blocks there are (the requested ones, and the
//! empty blocks that fill a gap in their numbers), with what number and time, and the limits and orderings
//! geth refuses. Pure: table-tested below.

use super::{SimError, MAX_BLOCKS, MAX_CALLS, MAX_CALLS_PER_BLOCK};

/// geth's default step between simulated blocks' timestamps.
pub const TIME_STEP: u64 = 12;

/// One block of the simulated chain: its number, its time, and which requested block it is (`None`: an empty
/// block filling a gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub number: u64,
    pub time: u64,
    pub request: Option<usize>,
}

/// What each requested block asks for: its number and time overrides, and its number of calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    pub number: Option<u64>,
    pub time: Option<u64>,
    pub calls: usize,
}

/// The simulated chain on top of the base block (`base_number`, `base_time`), or geth's error for it.
pub fn plan(base_number: u64, base_time: u64, asked: &[Asked]) -> Result<Vec<Planned>, SimError> {
    if asked.is_empty() {
        return Err(SimError::new(-32602, "empty input"));
    }
    if asked.len() > MAX_BLOCKS as usize {
        return Err(SimError::new(-38026, "too many blocks"));
    }
    let mut total = 0;
    for a in asked {
        if a.calls > MAX_CALLS_PER_BLOCK {
            let msg = format!("too many calls in block: {} > {MAX_CALLS_PER_BLOCK}", a.calls);
            return Err(SimError::new(-38026, msg));
        }
        total += a.calls;
        if total > MAX_CALLS {
            return Err(SimError::new(-38026, format!("too many calls: {total} > {MAX_CALLS}")));
        }
    }
    let (mut prev_number, mut prev_time) = (base_number, base_time);
    let mut out = Vec::new();
    for (i, a) in asked.iter().enumerate() {
        let number = a.number.unwrap_or(prev_number.saturating_add(1));
        if number <= prev_number {
            let msg = format!("block numbers must be in order: {number} <= {prev_number}");
            return Err(SimError::new(-38020, msg));
        }
        if number - base_number > MAX_BLOCKS {
            return Err(SimError::new(-38026, "too many blocks"));
        }
        for gap in prev_number + 1..number {
            prev_time = prev_time.saturating_add(TIME_STEP);
            out.push(Planned { number: gap, time: prev_time, request: None });
        }
        let time = match a.time {
            None => prev_time.saturating_add(TIME_STEP),
            Some(t) if t <= prev_time => {
                let msg = format!("block timestamps must be in order: {t} <= {prev_time}");
                return Err(SimError::new(-38021, msg));
            }
            Some(t) => t,
        };
        out.push(Planned { number, time, request: Some(i) });
        (prev_number, prev_time) = (number, time);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(number: Option<u64>, time: Option<u64>) -> Asked {
        Asked { number, time, calls: 1 }
    }

    type Case = (&'static str, Vec<Asked>, Result<Vec<Planned>, i32>);

    #[test]
    fn the_simulated_chain_is_planned_as_geth_plans_it() {
        let p = |number, time, request| Planned { number, time, request };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("one block, defaults",     vec![at(None, None)],                    Ok(vec![p(11, 112, Some(0))])),
            ("two blocks, defaults",    vec![at(None, None), at(None, None)],    Ok(vec![p(11, 112, Some(0)), p(12, 124, Some(1))])),
            ("a gap is filled",         vec![at(Some(13), None)],                Ok(vec![p(11, 112, None), p(12, 124, None), p(13, 136, Some(0))])),
            ("a time given",            vec![at(None, Some(200)), at(None, None)], Ok(vec![p(11, 200, Some(0)), p(12, 212, Some(1))])),
            ("numbers out of order",    vec![at(Some(12), None), at(Some(12), None)], Err(-38020)),
            ("a number at the base",    vec![at(Some(10), None)],                Err(-38020)),
            ("time not after parent",   vec![at(None, Some(100))],               Err(-38021)),
            ("time under a gap's time", vec![at(Some(15), Some(120))],           Err(-38021)),
            ("too far past the base",   vec![at(Some(10 + 257), None)],          Err(-38026)),
            ("256 past the base is ok", vec![at(Some(10 + 256), None)],          Ok((11..=266).map(|n| p(n, 100 + 12 * (n - 10), (n == 266).then_some(0))).collect())),
            ("nothing asked",           vec![],                                  Err(-32602)),
        ];
        for (name, asked, expected) in cases {
            let got = plan(10, 100, &asked).map_err(|e| e.code);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn too_many_blocks_or_calls_are_refused() {
        let many = vec![Asked::default(); 257];
        assert_eq!(plan(0, 0, &many).map_err(|e| e.code), Err(-38026));
        let crowded = vec![Asked { calls: MAX_CALLS_PER_BLOCK + 1, ..Default::default() }];
        assert_eq!(plan(0, 0, &crowded).map_err(|e| e.code), Err(-38026));
        let busy = vec![Asked { calls: MAX_CALLS_PER_BLOCK, ..Default::default() }; 3];
        assert_eq!(plan(0, 0, &busy).map_err(|e| e.code), Err(-38026));
    }
}
