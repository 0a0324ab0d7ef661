//! The test bed: a deterministic synthetic log, real Kafka brokers on 127.0.0.1 (genuine Apache Kafka, and
//! librdkafka's mock cluster for fault injection), geth as an Ethereum upstream, and a moto server (AWS API
//! emulator) for the Lambda functions.
//!
//! Shared by the integration tests, the benchmark and the local demo, so all three exercise the same
//! records.

pub mod broker;
pub mod gen;
pub mod geth;
pub mod kafka;
pub mod moto;

pub use broker::MockBroker;
pub use gen::{GenOptions, LogGenerator};
pub use geth::{Geth, GethError};
pub use kafka::{KafkaBroker, KafkaBrokerError};
pub use moto::{MotoError, MotoServer};

/// A port on 127.0.0.1 that is free now, for a server started next to bind.
///
/// Not one the OS hands out for port 0: those come from the kernel's ephemeral range, the same range every
/// outgoing connection (a test's client, the broker's own links) takes its local port from, so a port released
/// here could be taken by a connection before the server binds it ("address already in use"). Ports below
/// that range are never given to outgoing connections; the only other takers are this function's own picks,
/// which walk the range from a random start (distinct within a process; across concurrent test processes a
/// collision needs the same port picked and not yet bound in both).
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = listening_range();
    let span = u32::from(high - low);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        // A start that differs between processes started together (the time's nanoseconds and the pid).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let start = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span.min(4096) {
        let port = low + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ports for test servers: below the kernel's ephemeral range (`ip_local_port_range`, 32768 by default), down
/// to 10000; above it when it starts too low to leave room.
fn listening_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    match ephemeral {
        (lo, _) if lo >= 12000 => (10000, lo),
        (_, hi) if hi <= 63000 => (hi + 1, 65535),
        _ => (10000, 32768),
    }
}
