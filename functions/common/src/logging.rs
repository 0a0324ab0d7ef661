//! JSON logs: one object per line, which CloudWatch Logs Insights parses without a pattern.

/// Installs the JSON subscriber; `RUST_LOG` filters (default `info`). Safe to call twice (tests).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        // Lambda adds its own timestamp to every line; ours is kept for logs read elsewhere.
        .try_init();
}
