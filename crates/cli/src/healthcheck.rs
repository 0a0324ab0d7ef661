//! `ether-cattle healthcheck`: GET a health URL and exit 0 on a 2xx answer, 1 otherwise.
//!
//! The container image's HEALTHCHECK command: the runtime image has no curl or wget (CI's is built FROM
//! scratch), so the binary checks itself. Plain HTTP/1.0 over std's TcpStream, no dependencies.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{anyhow, bail, Context};

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// The endpoint to ask: the replica's readiness (the ALB's check) or liveness, or the publisher's /metrics.
    #[arg(long, env = "EC_HEALTHCHECK_URL", default_value = "http://127.0.0.1:8081/health/ready")]
    url: String,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, default_value_t = 3.0)]
    timeout_secs: f64,
}

/// `http://host:port/path` split into (`host:port`, `/path`); the port defaults to 80.
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest =
        url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// URLs are supported: {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("no host in {url:?}");
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let authority = if has_port { authority.to_owned() } else { format!("{authority}:80") };
    Ok((authority, path.to_owned()))
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
pub fn status_code(response: &str) -> anyhow::Result<u16> {
    let line = response.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => {
            code.parse().with_context(|| format!("bad status line {line:?}"))
        }
        _ => bail!("not an HTTP answer: {line:?}"),
    }
}

pub fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(args.timeout_secs.clamp(0.1, 300.0));
    let (authority, path) = split_url(&args.url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(256);
    (&mut stream).take(64 * 1024).read_to_end(&mut head).with_context(|| format!("reading from {addr}"))?;
    let text = String::from_utf8_lossy(&head);
    let code = status_code(&text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if (200..300).contains(&code) {
        println!("{code} {}", body.lines().next().unwrap_or(""));
        Ok(())
    } else {
        bail!("{} answered {code}: {}", args.url, body.lines().next().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok: &[(&str, &str, &str)] = &[
            ("http://127.0.0.1:8081/health/ready", "127.0.0.1:8081", "/health/ready"),
            ("http://localhost:9101/metrics", "localhost:9101", "/metrics"),
            ("http://example", "example:80", "/"),
            ("http://[::1]:8081/health/live", "[::1]:8081", "/health/live"),
            ("http://[::1]/x", "[::1]:80", "/x"),
        ];
        for (url, authority, path) in ok {
            let (a, p) = split_url(url).expect(url);
            assert_eq!((a.as_str(), p.as_str()), (*authority, *path), "{url}");
        }
        for bad in ["https://x/", "127.0.0.1:8081", "http:///path"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n\r\nready").ok(), Some(200));
        assert_eq!(status_code("HTTP/1.0 503 Service Unavailable\r\n").ok(), Some(503));
        assert!(status_code("").is_err());
        assert!(status_code("SSH-2.0-OpenSSH").is_err());
    }

    #[test]
    fn against_a_listener() {
        use std::net::TcpListener;
        for (answer, ok) in [("HTTP/1.1 200 OK\r\n\r\nready", true), ("HTTP/1.1 503 X\r\n\r\nlagging", false)]
        {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).expect("read");
                    assert!(n > 0, "request ended early");
                    request.extend_from_slice(&buf[..n]);
                }
                assert!(String::from_utf8_lossy(&request).starts_with("GET /health/ready HTTP/1.0\r\n"));
                s.write_all(answer.as_bytes()).expect("write");
            });
            let args =
                HealthcheckArgs { url: format!("http://127.0.0.1:{port}/health/ready"), timeout_secs: 2.0 };
            assert_eq!(run(args).is_ok(), ok, "{answer}");
            server.join().expect("server thread");
        }
    }
}
