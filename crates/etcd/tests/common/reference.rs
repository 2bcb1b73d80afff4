//! One-member servers of any etcd binary (ours or `/usr/bin/etcd`), driven over HTTP with
//! curl, for tests that compare our HTTP surfaces with etcd 3.4's byte for byte.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const REF_ETCD: &str = "/usr/bin/etcd";
pub const CURL: &str = "/usr/bin/curl";

/// Whether the reference etcd and curl are installed (Debian's etcd-server and curl); when
/// not, the comparison tests print a note and skip.
pub fn available() -> bool {
    let ok = Path::new(REF_ETCD).exists() && Path::new(CURL).exists();
    if !ok {
        eprintln!("note: {REF_ETCD} or {CURL} missing (Debian etcd-server, curl); skipping");
    }
    ok
}

pub struct Single {
    child: Child,
    pub client: String,
    pub peer: String,
    /// `--listen-metrics-urls`, when asked for.
    pub metrics: Option<String>,
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Single {
    /// Starts `binary` as a one-member cluster in `dir` with `extra` flags and waits until
    /// `/health` says true.
    pub fn start(binary: &str, dir: &Path, extra: &[&str], with_metrics: bool) -> Single {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let metrics = with_metrics.then(|| format!("http://127.0.0.1:{}", free_port()));
        let mut cmd = Command::new(binary);
        cmd.args(["--name", "m", "--data-dir"])
            .arg(dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m={peer}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(m) = &metrics {
            cmd.args(["--listen-metrics-urls", m]);
        }
        let child = cmd.spawn().expect("spawn etcd");
        let server = Single {
            child,
            client,
            peer,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !curl(&format!("{}/health", server.client), &[])
            .body
            .contains("true")
        {
            assert!(Instant::now() < deadline, "{binary} did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

/// An HTTP answer as curl saw it.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -s -i URL ARGS...` (5 s at most).
pub fn curl(url: &str, args: &[&str]) -> Answer {
    let out = Command::new(CURL)
        .args(["-s", "-i", "--max-time", "5"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(mut raw: &str) -> Answer {
    // curl shows the interim `100 Continue` of a large body first.
    while raw.starts_with("HTTP/1.1 100") {
        match raw.split_once("\r\n\r\n") {
            Some((_, rest)) => raw = rest,
            None => break,
        }
    }
    let mut answer = Answer::default();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    answer.status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            answer
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    answer.body = body.to_string();
    answer
}
