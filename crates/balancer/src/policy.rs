//! Which backend takes the next request: a pure function over what the health checks last saw.
//!
//! Round robin over the ready backends, skipping the ones this request already failed on. Kept apart from
//! the proxy so the rules are table-tested without sockets.

/// What the balancer knows of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendState {
    /// The last health check answered 200 and no request has failed on it since.
    pub ready: bool,
}

/// Picks the first ready backend at or after `cursor` (wrapping) that is not in `tried`.
pub fn pick(backends: &[BackendState], cursor: usize, tried: &[usize]) -> Option<usize> {
    let n = backends.len();
    (0..n).map(|i| (cursor + i) % n).find(|&i| backends[i].ready && !tried.contains(&i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: BackendState = BackendState { ready: true };
    const D: BackendState = BackendState { ready: false };

    /// backends, cursor, already tried, expected pick, why.
    type Case = (&'static [BackendState], usize, &'static [usize], Option<usize>, &'static str);

    #[test]
    fn picks_round_robin_over_ready_backends_only() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (&[], 0, &[], None, "no backends"),
            (&[D, D], 0, &[], None, "none ready"),
            (&[R, R], 0, &[], Some(0), "cursor on a ready one"),
            (&[R, R], 1, &[], Some(1), "cursor moves on"),
            (&[R, R], 2, &[], Some(0), "cursor wraps"),
            (&[D, R], 0, &[], Some(1), "skips a not-ready one"),
            (&[R, D, R], 1, &[], Some(2), "skips forward, not back"),
            (&[R, R], 0, &[0], Some(1), "retry goes elsewhere"),
            (&[R, R], 0, &[0, 1], None, "every ready one tried"),
            (&[R, D], 0, &[0], None, "the only ready one failed"),
        ];
        for (backends, cursor, tried, want, why) in cases {
            assert_eq!(pick(backends, *cursor, tried), *want, "{why}");
        }
    }
}
