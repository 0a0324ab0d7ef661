//! moto: an AWS API emulator (Python), its server app run on a free 127.0.0.1 port (one request at a time), so the
//! Lambda functions' tests drive the real AWS SDK clients against it. `scripts/setup.sh` installs it.
//!
//! The interpreter comes from `MOTO_PYTHON`, else `python3`. A server that does not start is an error, never a
//! skipped test.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// moto's server app, one request at a time (see the script: AWS's calls are atomic, moto's are not).
const SERVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/moto-server.py");

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto server: {0} (is moto installed? run scripts/setup.sh)")]
    Io(#[from] std::io::Error),
    #[error("moto server exited before listening ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("moto server did not answer on {0} within 60s")]
    NotListening(String),
}

/// A moto server on 127.0.0.1, killed when dropped.
pub struct MotoServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    pub fn start() -> Result<Self, MotoError> {
        let python = std::env::var("MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path)?;
        let port = crate::free_port()?;
        let mut child = Command::new(python)
            .args([SERVER_SCRIPT, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(MotoError::Exited { status: status.to_string(), log });
            }
            if answers(&addr) {
                return Ok(Self { child, port, _dir: dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(MotoError::NotListening(addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`, for the SDK's endpoint override.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// An HTTP answer to `GET /moto-api/` (the port is open before the app serves).
fn answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /moto-api/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1."))
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
