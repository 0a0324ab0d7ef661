//! A JSON-RPC proxy between the publisher and its client, for tests that need a client that lies or goes
//! away: it forwards every HTTP POST to the real client and can rewrite the answer, or refuse connections.
//!
//! Plain threads and HTTP/1.1 with `Connection: close`: the publisher's client (reqwest) handles that, and a
//! test needs nothing faster.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::Value;

/// Rewrites one call's answer: `(method, params, result)`; returns whether it changed anything.
pub type Rewrite = Box<dyn FnMut(&str, &Value, &mut Value) -> bool + Send>;

/// Sees each call `(method, params)` before it is forwarded (to change the client's chain under a caller).
pub type Before = Box<dyn FnMut(&str, &Value) + Send>;

pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    /// Milliseconds every answer is held back.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
    before: Arc<Mutex<Option<Before>>>,
    /// Answers rewritten so far.
    pub rewritten: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Forwards to `upstream` (`host:port`).
    pub fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let proxy = Proxy {
            port,
            down: Arc::default(),
            delay_ms: Arc::default(),
            rewrite: Arc::new(Mutex::new(None)),
            before: Arc::new(Mutex::new(None)),
            rewritten: Arc::default(),
            stop: Arc::default(),
        };
        let (down, rewrite, rewritten, stop) =
            (proxy.down.clone(), proxy.rewrite.clone(), proxy.rewritten.clone(), proxy.stop.clone());
        let delay = proxy.delay_ms.clone();
        let before = proxy.before.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if down.load(Ordering::Relaxed) {
                    drop(stream); // the client is "gone": the connection is cut before any answer
                    continue;
                }
                let (upstream, rewrite, rewritten) = (upstream.clone(), rewrite.clone(), rewritten.clone());
                let delay = Duration::from_millis(delay.load(Ordering::Relaxed));
                let before = before.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = serve(stream, &upstream, &before, &rewrite, &rewritten);
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts (true) or restores (false) the client.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Holds every answer back by `delay` (a slow client): connections accepted from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_before(&self, before: Option<Before>) {
        *self.before.lock().expect("before lock") = before;
    }

    pub fn set_rewrite(&self, rewrite: Option<Rewrite>) {
        *self.rewrite.lock().expect("rewrite lock") = rewrite;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    upstream: &str,
    before: &Mutex<Option<Before>>,
    rewrite: &Mutex<Option<Rewrite>>,
    rewritten: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    if let (Some(f), Ok(request)) =
        (before.lock().expect("before lock").as_mut(), serde_json::from_slice::<Value>(&body))
    {
        let calls = match &request {
            Value::Array(calls) => calls.iter().collect(),
            one => vec![one],
        };
        for call in calls {
            f(call["method"].as_str().unwrap_or(""), &call["params"]);
        }
    }
    let answer = forward(upstream, &body)?;
    let answer = match (serde_json::from_slice::<Value>(&body), serde_json::from_slice::<Value>(&answer)) {
        (Ok(request), Ok(mut response)) => {
            let mut guard = rewrite.lock().expect("rewrite lock");
            if let Some(f) = guard.as_mut() {
                let mut apply = |req: &Value, resp: &mut Value| {
                    let method = req["method"].as_str().unwrap_or("").to_owned();
                    if let Some(result) = resp.get_mut("result") {
                        if f(&method, &req["params"], result) {
                            rewritten.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                };
                match (&request, &mut response) {
                    (Value::Array(reqs), Value::Array(resps)) => {
                        for resp in resps.iter_mut() {
                            if let Some(req) = reqs.iter().find(|r| r["id"] == resp["id"]) {
                                apply(req, resp);
                            }
                        }
                    }
                    (req, resp) => apply(req, resp),
                }
            }
            serde_json::to_vec(&response).unwrap_or(answer)
        }
        _ => answer,
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    )?;
    out.write_all(&answer)?;
    out.flush()
}

/// One POST to the real client; its body.
fn forward(upstream: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(upstream)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        return Ok(dechunk(&body));
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}
