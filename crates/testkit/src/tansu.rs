//! tansu: an independent Kafka-protocol broker, run as a separate process with SQLite storage.
//!
//! Where the mock cluster is librdkafka talking to itself, tansu is a second implementation of the
//! protocol, with topic configurations (`retention.ms`) and a broker that can be stopped and restarted over
//! the same storage. Its retention runs when the broker starts, so "set a short retention, wait, restart"
//! really deletes records. Quirk the replica must survive: a partition emptied by retention reports its
//! earliest offset as 0 while the next record still gets a later offset.
//!
//! The binary comes from `TANSU_BIN`, else `tansu` on `PATH`, else `~/.cache/tansu/bin/tansu` (where
//! `.ci/run` installs it). A missing binary is an error, never a skipped test.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    #[error("tansu binary not found (set TANSU_BIN, put tansu on PATH, or run .ci/run to install it)")]
    NotFound,
    #[error("tansu: {0}")]
    Io(#[from] std::io::Error),
    #[error("tansu broker did not listen on {0} within 20s")]
    NotListening(String),
    #[error("tansu topic create {topic} failed: {stderr}")]
    CreateTopic { topic: String, stderr: String },
}

pub fn tansu_binary() -> Result<PathBuf, TansuError> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tansu/bin/tansu"));
    cached.filter(|p| p.is_file()).ok_or(TansuError::NotFound)
}

/// A tansu broker on 127.0.0.1, killed when dropped.
pub struct TansuBroker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TansuBroker {
    pub fn start() -> Result<Self, TansuError> {
        let bin = tansu_binary()?;
        let dir = tempfile::tempdir()?;
        // Ask the OS for a free port; tansu binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut broker = TansuBroker { bin, dir, port, child: None };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<(), TansuError> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("broker.log"))?;
        let child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err(TansuError::NotListening(addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts the broker over the same storage (which runs its retention pass).
    pub fn restart(&mut self) -> Result<(), TansuError> {
        self.stop();
        self.spawn()
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a one-partition topic with `key=value` configs (e.g. `retention.ms=2000`).
    pub fn create_topic(&self, topic: &str, configs: &[&str]) -> Result<(), TansuError> {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{}", self.port),
            "--partitions",
            "1",
        ]);
        for c in configs {
            cmd.args(["--config", c]);
        }
        let out = cmd.arg(topic).output()?;
        if !out.status.success() {
            return Err(TansuError::CreateTopic {
                topic: topic.into(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
