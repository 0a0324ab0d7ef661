//! `ether-cattle balancer`: the local cluster's stand-in for the ALB (see `ec_balancer`).

use std::{net::SocketAddr, time::Duration};

use ec_balancer::{Backend, Config};

#[derive(clap::Args)]
pub struct BalancerArgs {
    /// Where clients send JSON-RPC (HTTP).
    #[arg(long, env = "EC_BALANCER_ADDR", default_value = "127.0.0.1:8545")]
    listen: SocketAddr,
    /// A replica: `RPC_URL,HEALTH_URL`, e.g. `http://127.0.0.1:18551,http://127.0.0.1:19081/health/ready`.
    /// Repeat for each replica (of any cluster).
    #[arg(long = "backend", required = true)]
    backends: Vec<Backend>,
    /// Seconds between health checks of each replica.
    #[arg(long, default_value_t = 0.5)]
    check_interval_secs: f64,
    /// Seconds a request may take on one replica before it is retried on another.
    #[arg(long, default_value_t = 30.0)]
    request_timeout_secs: f64,
}

pub async fn run(
    args: BalancerArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", args.listen))?;
    tracing::info!(addr = %args.listen, backends = args.backends.len(), "balancer listening");
    let cfg = Config {
        backends: args.backends,
        check_interval: Duration::from_secs_f64(args.check_interval_secs.max(0.05)),
        request_timeout: Duration::from_secs_f64(args.request_timeout_secs.max(0.1)),
    };
    ec_balancer::serve(listener, cfg, shutdown).await?;
    Ok(())
}
