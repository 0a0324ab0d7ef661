//! `ether-cattle snapshot`: ask a running replica for a local snapshot of its database.
//!
//! The replica takes it (a RocksDB checkpoint can only come from the process that holds the database), so
//! this is a thin client of its `POST /admin/snapshot`.

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// The replica's health port, e.g. `http://127.0.0.1:19081` (the replica needs `--snapshot-dir`).
    #[arg(long, env = "EC_ADMIN_URL")]
    admin_url: String,
    /// Name of the snapshot directory; default `snap-<sequence>-<unix time>`.
    #[arg(long)]
    name: Option<String>,
}

pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let mut url = format!("{}/admin/snapshot", args.admin_url.trim_end_matches('/'));
    if let Some(name) = &args.name {
        url = format!("{url}?name={name}");
    }
    let resp =
        reqwest::Client::new().post(&url).send().await.map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| anyhow::anyhow!("reading the answer of {url}: {e}"))?;
    if !status.is_success() {
        anyhow::bail!("POST {url}: {status}: {body}");
    }
    println!("{body}");
    Ok(())
}
