//! geth as an Ethereum upstream for the tests: the most deployed execution client, on 127.0.0.1, killed when
//! dropped.
//!
//! Two ways to start it:
//! - [`Geth::dev`]: `geth --dev` (a block every `period` seconds from its simulated beacon) over a genesis
//!   made from geth's own developer genesis (system contracts included) plus the accounts the test funds;
//! - [`Geth::import`]: `geth init` with a fixture genesis, `geth import` of a chain file, then geth with its
//!   engine API (JWT secret generated per run), as hive does for the execution-apis conformance suite.
//!
//! Both run archive state with the hash scheme (`--gcmode archive --state.scheme hash`), so every old block
//! can be traced and read, and serve HTTP and websocket with `eth,net,web3,debug,txpool`. geth serves
//! `debug_traceBlockByNumber` (prestate tracer, diff mode) and no `trace_*`.
//!
//! The binary comes from `GETH_BIN`, else `geth` on `PATH`, else `~/.cache/geth/bin/geth` (where
//! `scripts/setup.sh` installs it with `go install`). A missing binary is an error, never a skipped test.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum GethError {
    #[error("geth binary not found (set GETH_BIN, put geth on PATH, or run scripts/setup.sh to install it)")]
    NotFound,
    #[error("geth: {0}")]
    Io(#[from] std::io::Error),
    #[error("geth {step} failed ({status}):\n{output}")]
    Step { step: String, status: std::process::ExitStatus, output: String },
    #[error("geth did not answer JSON-RPC on {url} within {secs}s; its log:\n{log}")]
    NotAnswering { url: String, secs: u64, log: String },
    #[error("geth exited ({status}); its log:\n{log}")]
    Exited { status: std::process::ExitStatus, log: String },
    #[error("geth: {0}")]
    Json(#[from] serde_json::Error),
    #[error("geth {method}: {detail}")]
    Rpc { method: String, detail: String },
}

pub fn geth_binary() -> Result<PathBuf, GethError> {
    if let Some(p) = std::env::var_os("GETH_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("geth");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/geth/bin/geth"));
    cached.filter(|p| p.is_file()).ok_or(GethError::NotFound)
}

/// A geth process on 127.0.0.1.
pub struct Geth {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    http_port: u16,
    ws_port: u16,
    auth_port: u16,
    jwt: [u8; 32],
    chain_id: u64,
    /// The flags `spawn` was given, for [`Geth::restart`].
    extra: Vec<String>,
    /// `--state.scheme`: "hash" (archive: every old block's state) unless told otherwise.
    scheme: &'static str,
}

impl Geth {
    /// `geth --dev` mining a block every `period_secs`; 0 is geth's on-demand mode, a block per transaction
    /// and no empty blocks (a test that needs blocks of many transactions uses a period). The genesis is geth's
    /// developer genesis with each address of `funded` given 10^6 ether, so tests sign with keys they know.
    pub fn dev(funded: &[&str], period_secs: u64) -> Result<Geth, GethError> {
        Geth::dev_with(funded, period_secs, |_| {})
    }

    /// [`Geth::dev`] with Prague from `prague_time` (unix seconds) and Cancun before it: a chain whose first
    /// blocks run Cancun's rules and the rest Prague's.
    pub fn dev_prague_at(funded: &[&str], period_secs: u64, prague_time: u64) -> Result<Geth, GethError> {
        Geth::dev_with(funded, period_secs, |config| {
            config.insert("pragueTime".into(), json!(prague_time));
            config.remove("osakaTime");
        })
    }

    /// [`Geth::dev`] with the path scheme, geth's default (a node as operators run it, without archive
    /// state).
    pub fn dev_path_scheme(funded: &[&str], period_secs: u64) -> Result<Geth, GethError> {
        Geth::dev_on("path", funded, period_secs, |_| {})
    }

    /// [`Geth::dev`] with its genesis `config` edited by `edit` first.
    pub fn dev_with(
        funded: &[&str],
        period_secs: u64,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Result<Geth, GethError> {
        Geth::dev_on("hash", funded, period_secs, edit)
    }

    fn dev_on(
        scheme: &'static str,
        funded: &[&str],
        period_secs: u64,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Result<Geth, GethError> {
        let mut geth = Geth::new()?;
        geth.scheme = scheme;
        let out = geth.run_step("dumpgenesis", Command::new(&geth.bin).args(["--dev", "dumpgenesis"]))?;
        let mut genesis: Value = serde_json::from_slice(&out.stdout)?;
        // geth's developer chain schedules forks still in development (Bogota, at 1.17.10); the chain here
        // stops at the newest fork Ether Cattle runs, so a replica can serve it (a publisher refuses blocks
        // past a fork it does not implement).
        if let Some(config) = genesis["config"].as_object_mut() {
            config.remove("bogotaTime");
            config.remove("amsterdamTime");
            edit(config);
        }
        // 60M gas from the first block (geth's developer genesis starts at 11.5M and `--miner.gaslimit` only
        // moves it by 1/1024 a block): room for blocks of a thousand and more transfers.
        genesis["gasLimit"] = json!("0x3938700");
        let million_ether = "0xd3c21bcecceda1000000";
        for address in funded {
            genesis["alloc"][address.to_lowercase()] = json!({ "balance": million_ether });
        }
        geth.chain_id = genesis["config"]["chainId"].as_u64().unwrap_or(1337);
        let genesis_path = geth.dir.path().join("genesis.json");
        std::fs::write(&genesis_path, serde_json::to_vec_pretty(&genesis)?)?;
        geth.init(&genesis_path)?;
        let period = period_secs.to_string();
        geth.spawn(&["--dev", "--dev.period", &period, "--miner.gaslimit", "60000000"])?;
        Ok(geth)
    }

    /// `geth init` with `genesis`, `geth import` of `chain` (concatenated block RLP), then geth serving the
    /// imported chain with its engine API open (see [`Geth::engine_call`]); it mines nothing.
    pub fn import(genesis: &Path, chain: &Path) -> Result<Geth, GethError> {
        let mut geth = Geth::new()?;
        let g: Value = serde_json::from_slice(&std::fs::read(genesis)?)?;
        geth.chain_id = g["config"]["chainId"].as_u64().unwrap_or(1);
        geth.init(genesis)?;
        let datadir = geth.datadir();
        geth.run_step(
            "import",
            Command::new(&geth.bin)
                .args(["--datadir"])
                .arg(&datadir)
                .args(["--gcmode", "archive", "--state.scheme", "hash", "--syncmode", "full", "import"])
                .arg(chain),
        )?;
        geth.spawn(&["--syncmode", "full"])?;
        Ok(geth)
    }

    fn new() -> Result<Geth, GethError> {
        let mut jwt = [0u8; 32];
        // A per-run secret: good enough entropy for a test from the clock and the process id.
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
            ^ u128::from(std::process::id());
        for (i, b) in jwt.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
        Ok(Geth {
            bin: geth_binary()?,
            dir: tempfile::tempdir()?,
            child: None,
            http_port: crate::free_port()?,
            ws_port: crate::free_port()?,
            auth_port: crate::free_port()?,
            jwt,
            chain_id: 0,
            extra: Vec::new(),
            scheme: "hash",
        })
    }

    fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("geth.log")
    }

    /// geth's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn run_step(&self, step: &str, cmd: &mut Command) -> Result<Output, GethError> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(GethError::Step {
                step: step.into(),
                status: out.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out)
    }

    fn init(&self, genesis: &Path) -> Result<(), GethError> {
        self.run_step(
            "init",
            Command::new(&self.bin)
                .arg("--datadir")
                .arg(self.datadir())
                // Preimages from genesis on (archive mode records the later ones): `geth dump` and
                // `debug_accountRange` name every account by address only when geth knows it.
                .args(["--state.scheme", self.scheme, "--cache.preimages", "init"])
                .arg(genesis),
        )?;
        Ok(())
    }

    fn spawn(&mut self, extra: &[&str]) -> Result<(), GethError> {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        let jwt_path = self.dir.path().join("jwt.hex");
        std::fs::write(&jwt_path, hex(&self.jwt))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let apis = "eth,net,web3,debug,txpool";
        let child = Command::new(&self.bin)
            .arg("--datadir")
            .arg(self.datadir())
            .args(["--state.scheme", self.scheme])
            // Archive state with the hash scheme; the path scheme keeps its default (recent state only).
            .args(if self.scheme == "hash" { &["--gcmode", "archive"][..] } else { &[] })
            .args(["--http", "--http.addr", "127.0.0.1", "--http.port", &self.http_port.to_string()])
            .args([
                "--http.api",
                apis,
                "--ws",
                "--ws.addr",
                "127.0.0.1",
                "--ws.port",
                &self.ws_port.to_string(),
            ])
            .args(["--ws.api", apis])
            .args(["--authrpc.addr", "127.0.0.1", "--authrpc.port", &self.auth_port.to_string()])
            .arg("--authrpc.jwtsecret")
            .arg(&jwt_path)
            // No peers, no discovery, no listening socket for them (port 0 with no peers allowed).
            .args(["--nodiscover", "--maxpeers", "0", "--port", "0", "--nat", "none", "--ipcdisable"])
            .args(["--verbosity", "3"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.child = Some(child);
        let secs = 60;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.call("eth_chainId", json!([])).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(GethError::Exited { status, log: self.log() });
            }
            if Instant::now() > deadline {
                return Err(GethError::NotAnswering { url: self.http_url(), secs, log: self.log() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops geth the way an operator does (SIGINT) and waits for it to exit: it writes its state snapshot
    /// on the way out, which `geth snapshot dump` needs (after a SIGKILL it refuses: "head doesn't match
    /// snapshot").
    pub fn stop(&mut self) -> Result<(), GethError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = child.id().to_string();
        self.run_step("stop", Command::new("kill").args(["-INT", &pid]))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GethError::NotAnswering { url: "SIGINT".into(), secs: 60, log: self.log() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a stopped geth again on the same data directory, ports and flags.
    pub fn restart(&mut self) -> Result<(), GethError> {
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.spawn(&extra)
    }

    /// `geth snapshot dump` of the head state of a stopped geth into `out` (JSON lines: the root, then one
    /// account per line, by hashed address).
    pub fn snapshot_dump(&self, out: &Path) -> Result<(), GethError> {
        self.run_to_file("snapshot dump", &["snapshot", "dump"], out)
    }

    /// `geth dump <block>` of a stopped geth into `out`: the trie dump, one account per line with its
    /// address and its storage by plain slot (geth knows the preimages: see `init`).
    pub fn trie_dump(&self, block: u64, out: &Path) -> Result<(), GethError> {
        self.run_to_file("dump", &["dump", &block.to_string()], out)
    }

    /// A geth command on the stopped geth's data directory, its output written to `out` (too large to hold:
    /// a dump is the whole state).
    fn run_to_file(&self, step: &str, command: &[&str], out: &Path) -> Result<(), GethError> {
        let file = std::fs::File::create(out)?;
        let output = Command::new(&self.bin)
            .arg("--datadir")
            .arg(self.datadir())
            .args(["--state.scheme", "hash"])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            return Err(GethError::Step {
                step: step.into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The genesis file geth was initialised with (dev mode: the one made from geth's developer genesis).
    pub fn dev_genesis_path(&self) -> PathBuf {
        self.dir.path().join("genesis.json")
    }

    /// One JSON-RPC call; the result, or the error object as text.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, GethError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = post_json(self.http_port, &body, None)
            .map_err(|e| GethError::Rpc { method: method.into(), detail: e.to_string() })?;
        rpc_result(method, response)
    }

    /// One call to the engine API (authenticated with a fresh HS256 token over the run's JWT secret).
    pub fn engine_call(&self, method: &str, params: Value) -> Result<Value, GethError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let token = jwt_token(&self.jwt);
        let response = post_json(self.auth_port, &body, Some(&token))
            .map_err(|e| GethError::Rpc { method: method.into(), detail: e.to_string() })?;
        rpc_result(method, response)
    }
}

impl Drop for Geth {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rpc_result(method: &str, response: Value) -> Result<Value, GethError> {
    if let Some(e) = response.get("error") {
        return Err(GethError::Rpc { method: method.into(), detail: e.to_string() });
    }
    Ok(response.get("result").cloned().unwrap_or(Value::Null))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HS256 JWT with only `iat`, as the engine API requires (EIP-3675 authentication).
fn jwt_token(secret: &[u8; 32]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use hmac::{Mac, SimpleHmac};
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat}}}"#));
    let signing_input = format!("{header}.{claims}");
    let mut mac =
        <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// A JSON POST over HTTP/1.0 to 127.0.0.1:`port`; the response body as JSON.
fn post_json(port: u16, body: &Value, bearer: Option<&str>) -> std::io::Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.to_string();
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (_, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP body"))?;
    serde_json::from_str(payload)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {payload}")))
}
