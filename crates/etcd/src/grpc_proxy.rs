//! `etcd grpc-proxy start`: etcd 3.4's gRPC proxy, as a pass-through. Every v3 call that
//! reaches `--listen-addr` (plain, or TLS with `--cert-file`/`--key-file`) is forwarded
//! unchanged to `--endpoints` over one HTTP/2 connection per endpoint, dialled on first use
//! (TLS to the members with `--cert`/`--key`/`--cacert`, whose certificate must carry no
//! Common Name, as etcd checks: the members would take it for a user name). A call that cannot
//! reach the current endpoint moves the proxy on to the next one. `/health` answers from a
//! member. Not done yet: the range cache, watch and lease keep-alive coalescing,
//! `--namespace`, `--resolver-prefix` registration and the proxy's own `/metrics`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use etcd_transport::{ALPN_H2, ListenOptions, ListenUrl, Listener, TlsInfo};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

const USAGE: &str = "Usage:
  etcd grpc-proxy start [flags]
";

/// Flags that take no value.
const BOOL_FLAGS: &[&str] = &[
    "auto-tls",
    "debug",
    "enable-pprof",
    "experimental-serializable-ordering",
    "insecure-discovery",
    "insecure-skip-tls-verify",
];

/// Flags that take a value and are accepted, but not acted on yet.
const ACCEPTED_FLAGS: &[&str] = &[
    "advertise-client-url",
    "client-crl-file",
    "data-dir",
    "discovery-srv",
    "discovery-srv-name",
    "experimental-leasing-prefix",
    "max-concurrent-streams",
    "max-recv-bytes",
    "max-send-bytes",
    "metrics-addr",
    "namespace",
    "resolver-prefix",
    "resolver-ttl",
];

#[derive(Default)]
struct Options {
    endpoints: Vec<String>,
    listen_addr: String,
    cert: String,
    key: String,
    cacert: String,
    cert_file: String,
    key_file: String,
    trusted_ca_file: String,
    cipher_suites: Vec<String>,
    insecure_skip_verify: bool,
}

fn parse(args: &[String]) -> Result<(Vec<String>, Options), String> {
    let mut opts = Options {
        endpoints: vec!["127.0.0.1:2379".into()],
        listen_addr: "127.0.0.1:23790".into(),
        ..Options::default()
    };
    let mut help = false;
    let is_bool = |name: &str| BOOL_FLAGS.contains(&name) || name == "h" || name == "help";
    let mut words = crate::subcommand_flags::parse(args, is_bool, |name, value| {
        let list = |v: Option<String>| -> Vec<String> {
            v.unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        match name {
            "h" | "help" => help = true,
            "insecure-skip-tls-verify" => {
                opts.insecure_skip_verify = value.as_deref() != Some("false")
            }
            other if BOOL_FLAGS.contains(&other) => {}
            "endpoints" => opts.endpoints = list(value),
            "listen-addr" => opts.listen_addr = value.unwrap_or_default(),
            "cert" => opts.cert = value.unwrap_or_default(),
            "key" => opts.key = value.unwrap_or_default(),
            "cacert" => opts.cacert = value.unwrap_or_default(),
            "cert-file" => opts.cert_file = value.unwrap_or_default(),
            "key-file" => opts.key_file = value.unwrap_or_default(),
            "trusted-ca-file" => opts.trusted_ca_file = value.unwrap_or_default(),
            "listen-cipher-suites" => opts.cipher_suites = list(value),
            other if ACCEPTED_FLAGS.contains(&other) => {}
            other => return Err(format!("unknown flag: --{other}")),
        }
        Ok(())
    })?;
    if help {
        words.push("--help".into());
    }
    Ok((words, opts))
}

fn path(s: &str) -> Option<std::path::PathBuf> {
    (!s.is_empty()).then(|| s.into())
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (words, opts) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("Error: {e}");
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    if words != ["start"] {
        eprint!("{USAGE}");
        return if words.iter().any(|w| w == "--help") {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd grpc-proxy: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd grpc-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The members, one lazily dialled channel each, and the one calls go to.
struct Upstream {
    channels: Vec<tonic::transport::Channel>,
    current: AtomicUsize,
    endpoints: Vec<String>,
}

async fn run(opts: Options) -> Result<(), String> {
    let client_tls = TlsInfo {
        cert_file: path(&opts.cert),
        key_file: path(&opts.key),
        trusted_ca_file: path(&opts.cacert),
        insecure_skip_verify: opts.insecure_skip_verify,
        empty_cn: true,
        ..TlsInfo::default()
    };
    let upstream_tls = if client_tls.is_empty() && client_tls.trusted_ca_file.is_none() {
        None
    } else {
        Some(
            client_tls
                .client_config(&[ALPN_H2])
                .map_err(|e| e.to_string())?,
        )
    };
    let mut channels = Vec::new();
    let mut endpoints = Vec::new();
    for endpoint in &opts.endpoints {
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else if upstream_tls.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        };
        let options = etcd_client::ConnectOptions {
            tls: upstream_tls.clone(),
            dial_timeout: Duration::from_secs(5),
            ..etcd_client::ConnectOptions::default()
        };
        channels.push(etcd_client::lazy_channel(&url, &options).map_err(|e| e.to_string())?);
        endpoints.push(url);
    }
    if channels.is_empty() {
        return Err("no --endpoints to proxy to".into());
    }
    let upstream = Arc::new(Upstream {
        channels,
        current: AtomicUsize::new(0),
        endpoints,
    });

    let serving_tls = TlsInfo {
        cert_file: path(&opts.cert_file),
        key_file: path(&opts.key_file),
        trusted_ca_file: path(&opts.trusted_ca_file),
        cipher_suites: opts.cipher_suites.clone(),
        ..TlsInfo::default()
    };
    let (scheme, tls) = if serving_tls.is_empty() {
        ("http", None)
    } else {
        (
            "https",
            Some(serving_tls.server_config().map_err(|e| e.to_string())?),
        )
    };
    let url = ListenUrl::parse(&format!("{scheme}://{}", opts.listen_addr))
        .map_err(|e| format!("bad --listen-addr {}: {e}", opts.listen_addr))?;
    let mut listener = Listener::bind(&url, tls, ListenOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "etcd grpc-proxy: listening for gRPC on {scheme}://{}, forwarding to {}",
        opts.listen_addr,
        upstream.endpoints.join(",")
    );
    let router = Router::new()
        .route("/health", get(health))
        .fallback(forward)
        .with_state(upstream);
    loop {
        let conn = listener.accept().await;
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(conn), service)
                .await;
        });
    }
}

/// A gRPC error answer (trailers only), for a call the proxy could not forward.
fn grpc_unavailable(message: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    if let Ok(v) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", v);
    }
    response
}

async fn forward(State(upstream): State<Arc<Upstream>>, req: Request) -> Response {
    let at = upstream.current.load(Ordering::Relaxed) % upstream.channels.len();
    let channel = upstream.channels[at].clone();
    let req = req.map(tonic::body::Body::new);
    match channel.oneshot(req).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(e) => {
            // The next call tries the next member.
            let _ =
                upstream
                    .current
                    .compare_exchange(at, at + 1, Ordering::Relaxed, Ordering::Relaxed);
            grpc_unavailable(&format!(
                "grpc-proxy: cannot reach {}: {e}",
                upstream.endpoints[at]
            ))
        }
    }
}

/// `/health`: a member answers a serializable read through the proxy.
async fn health(State(upstream): State<Arc<Upstream>>) -> Response {
    let at = upstream.current.load(Ordering::Relaxed) % upstream.channels.len();
    let mut kv = etcd_api::etcdserverpb::kv_client::KvClient::new(upstream.channels[at].clone());
    let request = etcd_api::etcdserverpb::RangeRequest {
        key: b"health".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let healthy = tokio::time::timeout(Duration::from_secs(1), kv.range(request))
        .await
        .is_ok_and(|r| r.is_ok());
    let body = if healthy {
        "{\"health\":\"true\"}"
    } else {
        "{\"health\":\"false\"}"
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
