//! `etcd grpc-proxy start`: etcd 3.4's gRPC proxy. Clients talk v3 to `--listen-addr`
//! (plain, or TLS with `--cert-file`/`--key-file`, or `--auto-tls`) and the proxy talks to
//! `--endpoints` (or the members a `--discovery-srv` domain names), over one HTTP/2 connection
//! per member dialled on first use (TLS with `--cert`/`--key`/`--cacert`; the certificate must
//! carry no Common Name, as etcd checks: the members would take it for a user name). A call
//! that cannot reach the current member moves the proxy on to the next one.
//!
//! What the proxy adds, each in its own module:
//! - [`kv`]: serializable ranges answered from a cache ([`cache`]) kept up by the writes that
//!   go through;
//! - [`watch`]: identical watches coalesced into one watch on a member;
//! - [`lease`]: keep-alives of one lease coalesced into one in flight;
//! - [`namespace`]: `--namespace`, a key space of its own for the proxy's clients;
//! - [`registry`]: `--resolver-prefix` registration, and `MemberList` naming the proxies;
//! - [`metrics`]: `/metrics` (a member's) and `/proxy/metrics` (the proxy's own), on the
//!   listen address and on `--metrics-addr`; `/health` answers whether a member serves.
//!
//! Maintenance and Auth calls are forwarded unchanged, as HTTP/2 requests.

mod cache;
mod kv;
mod lease;
mod lock_election;
mod metrics;
mod namespace;
mod registry;
mod upstream;
mod watch;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use etcd_api::etcdserverpb::cluster_server::ClusterServer;
use etcd_api::etcdserverpb::kv_server::KvServer;
use etcd_api::etcdserverpb::lease_server::LeaseServer;
use etcd_api::etcdserverpb::watch_server::WatchServer;
use etcd_api::v3electionpb::election_server::ElectionServer;
use etcd_api::v3lockpb::lock_server::LockServer;
use etcd_transport::{ALPN_H2, ListenOptions, ListenUrl, Listener, TlsInfo};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use metrics::ProxyMetrics;
use upstream::Upstream;

const USAGE: &str = "Usage:
  etcd grpc-proxy start [flags]
";

/// Flags that take no value.
const BOOL_FLAGS: &[&str] = &[
    "auto-tls",
    "debug",
    "enable-pprof",
    "enable-ui",
    "experimental-serializable-ordering",
    "insecure-discovery",
    "insecure-skip-tls-verify",
];

/// etcd's `defaultGRPCMaxCallSendMsgSize`: 1.5 MiB.
const DEFAULT_MAX_SEND_BYTES: usize = 3 << 19;

struct Options {
    endpoints: Vec<String>,
    listen_addr: String,
    cert: String,
    key: String,
    cacert: String,
    cert_file: String,
    key_file: String,
    trusted_ca_file: String,
    client_crl_file: String,
    cipher_suites: Vec<String>,
    insecure_skip_verify: bool,
    auto_tls: bool,
    data_dir: String,
    discovery_srv: String,
    discovery_srv_name: String,
    insecure_discovery: bool,
    metrics_addr: String,
    advertise_client_url: String,
    resolver_prefix: String,
    resolver_ttl: i64,
    namespace: String,
    max_send_bytes: usize,
    max_recv_bytes: usize,
    max_concurrent_streams: u32,
    /// `--enable-ui` (ours): the web console and the JSON gateway it talks to.
    enable_ui: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            endpoints: vec!["127.0.0.1:2379".into()],
            listen_addr: "127.0.0.1:23790".into(),
            cert: String::new(),
            key: String::new(),
            cacert: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            trusted_ca_file: String::new(),
            client_crl_file: String::new(),
            cipher_suites: Vec::new(),
            insecure_skip_verify: false,
            auto_tls: false,
            data_dir: "default.proxy".into(),
            discovery_srv: String::new(),
            discovery_srv_name: String::new(),
            insecure_discovery: false,
            metrics_addr: String::new(),
            advertise_client_url: "127.0.0.1:23790".into(),
            resolver_prefix: String::new(),
            resolver_ttl: 0,
            namespace: String::new(),
            max_send_bytes: DEFAULT_MAX_SEND_BYTES,
            max_recv_bytes: i32::MAX as usize,
            max_concurrent_streams: u32::MAX,
            enable_ui: false,
        }
    }
}

/// A Go-style boolean flag value (`--flag`, `--flag=true`, `--flag=false`).
fn flag_bool(value: Option<&str>) -> bool {
    !matches!(value, Some("false" | "0" | "f" | "F" | "FALSE" | "False"))
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid argument {value:?} for \"--{name}\" flag: parse error"))
}

fn parse(args: &[String]) -> Result<(Vec<String>, Options), String> {
    let mut opts = Options::default();
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
        let text = value.clone().unwrap_or_default();
        match name {
            "h" | "help" => help = true,
            "insecure-skip-tls-verify" => opts.insecure_skip_verify = flag_bool(value.as_deref()),
            "insecure-discovery" => opts.insecure_discovery = flag_bool(value.as_deref()),
            "auto-tls" => opts.auto_tls = flag_bool(value.as_deref()),
            "enable-ui" => opts.enable_ui = flag_bool(value.as_deref()),
            // The proxy logs its start and its failures; there is nothing more to say at
            // debug level.
            "debug" => {}
            "enable-pprof" if flag_bool(value.as_deref()) => {
                return Err(
                    "--enable-pprof serves Go's runtime profiler, which this proxy does not \
                     have; profile it with perf instead"
                        .into(),
                );
            }
            "experimental-serializable-ordering" if flag_bool(value.as_deref()) => {
                return Err(
                    "--experimental-serializable-ordering is not supported by this \
                            grpc-proxy; use linearizable reads for ordered results"
                        .into(),
                );
            }
            "enable-pprof" | "experimental-serializable-ordering" => {}
            "experimental-leasing-prefix" if !text.is_empty() => {
                return Err("--experimental-leasing-prefix is not supported by this \
                            grpc-proxy"
                    .into());
            }
            "experimental-leasing-prefix" => {}
            "endpoints" => opts.endpoints = list(value),
            "listen-addr" => opts.listen_addr = text,
            "cert" => opts.cert = text,
            "key" => opts.key = text,
            "cacert" => opts.cacert = text,
            "cert-file" => opts.cert_file = text,
            "key-file" => opts.key_file = text,
            "trusted-ca-file" => opts.trusted_ca_file = text,
            "client-crl-file" => opts.client_crl_file = text,
            "listen-cipher-suites" => opts.cipher_suites = list(value),
            "data-dir" => opts.data_dir = text,
            "discovery-srv" => opts.discovery_srv = text,
            "discovery-srv-name" => opts.discovery_srv_name = text,
            "metrics-addr" => opts.metrics_addr = text,
            "advertise-client-url" => opts.advertise_client_url = text,
            "resolver-prefix" => opts.resolver_prefix = text,
            "resolver-ttl" => opts.resolver_ttl = parse_number(name, &text)?,
            "namespace" => opts.namespace = text,
            "max-send-bytes" => opts.max_send_bytes = parse_number(name, &text)?,
            "max-recv-bytes" => opts.max_recv_bytes = parse_number(name, &text)?,
            "max-concurrent-streams" => opts.max_concurrent_streams = parse_number(name, &text)?,
            other => return Err(format!("unknown flag: --{other}")),
        }
        Ok(())
    })?;
    if help {
        words.push("--help".into());
    }
    Ok((words, opts))
}

/// etcd's `checkArgs`: the resolver settings go together.
fn check(opts: &Options) -> Result<(), String> {
    if !opts.resolver_prefix.is_empty() && opts.resolver_ttl < 1 {
        return Err(format!("invalid resolver-ttl {}", opts.resolver_ttl));
    }
    if opts.resolver_prefix.is_empty() && opts.resolver_ttl > 0 {
        return Err(format!(
            "invalid resolver-prefix {:?}",
            opts.resolver_prefix
        ));
    }
    if !opts.resolver_prefix.is_empty() && opts.advertise_client_url.is_empty() {
        return Err(format!(
            "invalid advertise-client-url {:?}",
            opts.advertise_client_url
        ));
    }
    Ok(())
}

fn path(s: &str) -> Option<std::path::PathBuf> {
    (!s.is_empty()).then(|| s.into())
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (words, mut opts) = match parse(&args) {
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
    if let Err(e) = check(&opts) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match crate::gateway::discover_endpoints(
        &opts.discovery_srv,
        &opts.discovery_srv_name,
        opts.insecure_discovery,
    ) {
        Ok(Some(found)) => opts.endpoints = found,
        Ok(None) => {}
        Err(e) => {
            eprintln!("etcd grpc-proxy: {e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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

/// The channels to the members, dialled on first use.
fn connect_upstream(opts: &Options) -> Result<Upstream, String> {
    let client_tls = TlsInfo {
        cert_file: path(&opts.cert),
        key_file: path(&opts.key),
        trusted_ca_file: path(&opts.cacert),
        insecure_skip_verify: opts.insecure_skip_verify,
        empty_cn: true,
        ..TlsInfo::default()
    };
    let wants_tls =
        !client_tls.is_empty() || client_tls.trusted_ca_file.is_some() || opts.insecure_skip_verify;
    let upstream_tls = if wants_tls {
        Some(
            client_tls
                .client_config(&[ALPN_H2])
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
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
    Ok(Upstream::new(
        channels,
        endpoints,
        opts.max_recv_bytes,
        opts.max_send_bytes,
    ))
}

/// How clients reach the proxy: TLS from `--cert-file`/`--key-file`, or self-signed under
/// `<data-dir>/fixtures/proxy` with `--auto-tls`, or plain.
fn serving_tls(opts: &Options) -> Result<Option<TlsInfo>, String> {
    let mut info = TlsInfo {
        cert_file: path(&opts.cert_file),
        key_file: path(&opts.key_file),
        trusted_ca_file: path(&opts.trusted_ca_file),
        cipher_suites: opts.cipher_suites.clone(),
        ..TlsInfo::default()
    };
    if info.is_empty() && info.trusted_ca_file.is_none() {
        if !opts.auto_tls {
            return Ok(None);
        }
        let dir = std::path::Path::new(&opts.data_dir)
            .join("fixtures")
            .join("proxy");
        info = etcd_transport::self_signed(&dir, std::slice::from_ref(&opts.listen_addr), 1)
            .map_err(|e| e.to_string())?;
        info.cipher_suites = opts.cipher_suites.clone();
    }
    info.crl_file = path(&opts.client_crl_file);
    Ok(Some(info))
}

/// What the proxy serves: the v3 services (its own for KV, Watch, Lease, Cluster, Lock and
/// Election; Maintenance and Auth forwarded as they are) and its HTTP endpoints.
fn router(opts: &Options, upstream: Arc<Upstream>, metrics: Arc<ProxyMetrics>) -> Router {
    let ns = namespace::Namespace::new(&opts.namespace);
    let kv = kv::KvProxy {
        upstream: upstream.clone(),
        namespace: ns.clone(),
        cache: Arc::new(Mutex::new(cache::RangeCache::default())),
        metrics: metrics.clone(),
    };
    let watch = watch::WatchProxy {
        hub: watch::WatchHub::new(upstream.clone(), ns.clone(), metrics.clone()),
    };
    let lease = lease::LeaseProxy {
        upstream: upstream.clone(),
        namespace: ns.clone(),
        keep_alives: lease::KeepAliveHub::new(upstream.clone()),
    };
    let cluster = registry::ClusterProxy {
        upstream: upstream.clone(),
        advertise: path(&opts.advertise_client_url).map(|_| opts.advertise_client_url.clone()),
        resolver_prefix: path(&opts.resolver_prefix).map(|_| opts.resolver_prefix.clone()),
    };
    let lock = lock_election::LockProxy {
        upstream: upstream.clone(),
        namespace: ns.clone(),
    };
    let election = lock_election::ElectionProxy {
        upstream: upstream.clone(),
        namespace: ns,
    };
    let grpc = tonic::service::Routes::new(KvServer::new(kv))
        .add_service(WatchServer::new(watch))
        .add_service(LeaseServer::new(lease))
        .add_service(ClusterServer::new(cluster))
        .add_service(LockServer::new(lock))
        .add_service(ElectionServer::new(election))
        .into_axum_router();
    let services = grpc
        .merge(http_routes(upstream.clone(), metrics))
        .fallback(move |request: Request| forward(upstream.clone(), request));
    if !opts.enable_ui {
        return services;
    }
    // The console's gateway calls go through the proxy's own services (its cache, its
    // coalesced watches) and its forwarding, as a gRPC client's would.
    let gateway = etcd_server::json_gateway(
        services.clone(),
        opts.max_concurrent_streams,
        opts.max_recv_bytes,
    );
    services.merge(gateway).merge(etcd_console::router())
}

/// `/health`, `/metrics` and `/proxy/metrics`.
fn http_routes(upstream: Arc<Upstream>, metrics: Arc<ProxyMetrics>) -> Router {
    let for_health = upstream.clone();
    Router::new()
        .route("/health", get(move || health(for_health.clone())))
        .route("/metrics", get(move || member_metrics(upstream.clone())))
        .route(
            "/proxy/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
}

async fn serve(mut listener: Listener, router: Router, max_concurrent_streams: u32) {
    loop {
        let conn = listener.accept().await;
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .max_concurrent_streams(max_concurrent_streams);
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(conn), service)
                .await;
        });
    }
}

async fn run(opts: Options) -> Result<(), String> {
    let upstream = Arc::new(connect_upstream(&opts)?);
    let tls = serving_tls(&opts)?;
    let server_config = match &tls {
        Some(info) => Some(info.server_config().map_err(|e| e.to_string())?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = ListenUrl::parse(&format!("{scheme}://{}", opts.listen_addr))
        .map_err(|e| format!("bad --listen-addr {}: {e}", opts.listen_addr))?;
    let listener = Listener::bind(&url, server_config.clone(), ListenOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let metrics = Arc::new(ProxyMetrics::new());
    if !opts.metrics_addr.is_empty() {
        let url = ListenUrl::parse(&opts.metrics_addr)
            .map_err(|e| format!("bad --metrics-addr {}: {e}", opts.metrics_addr))?;
        let metrics_tls = if url.scheme() == etcd_transport::Scheme::Https {
            server_config.clone()
        } else {
            None
        };
        let metrics_listener = Listener::bind(&url, metrics_tls, ListenOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let routes = http_routes(upstream.clone(), metrics.clone());
        tokio::spawn(serve(metrics_listener, routes, opts.max_concurrent_streams));
        tracing::info!(address = %opts.metrics_addr, "gRPC proxy server metrics URL serving");
    }
    if !opts.resolver_prefix.is_empty() {
        tokio::spawn(registry::register(
            upstream.clone(),
            opts.resolver_prefix.clone(),
            opts.advertise_client_url.clone(),
            opts.resolver_ttl,
        ));
    }
    eprintln!(
        "etcd grpc-proxy: listening for gRPC on {scheme}://{}, forwarding to {}",
        opts.listen_addr,
        upstream.endpoints.join(",")
    );
    let router = router(&opts, upstream, metrics);
    serve(listener, router, opts.max_concurrent_streams).await;
    Ok(())
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

/// Maintenance and Auth calls (and anything else): the HTTP/2 request goes to the member as
/// it came, and its answer back.
async fn forward(upstream: Arc<Upstream>, req: Request) -> Response {
    let (at, channel) = upstream.channel();
    let req = req.map(tonic::body::Body::new);
    match channel.oneshot(req).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(e) => {
            // The next call tries the next member.
            upstream.failed(at);
            grpc_unavailable(&format!(
                "grpc-proxy: cannot reach {}: {e}",
                upstream.endpoints[at]
            ))
        }
    }
}

/// `/metrics`: the metrics of the member the proxy talks to, as etcd 3.4's proxy answers
/// (its own are on `/proxy/metrics`).
async fn member_metrics(upstream: Arc<Upstream>) -> Response {
    let (at, channel) = upstream.channel();
    let request = axum::http::Request::get(format!("{}/metrics", upstream.endpoints[at]))
        .body(tonic::body::Body::empty());
    let Ok(request) = request else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match channel.oneshot(request).await {
        Ok(response) if response.status().is_success() => {
            let body = axum::body::Body::new(response.into_body());
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
        }
        Ok(_) | Err(_) => {
            upstream.failed(at);
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n").into_response()
        }
    }
}

/// `/health`: as etcd's proxy, healthy when a member answers a linearizable read within a
/// second (a permission error is an answer).
async fn health(upstream: Arc<Upstream>) -> Response {
    let (at, channel) = upstream.channel();
    let mut kv = etcd_api::etcdserverpb::kv_client::KvClient::new(channel);
    let request = etcd_api::etcdserverpb::RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), kv.range(request)).await;
    let healthy = match answer {
        Ok(Ok(_)) => true,
        Ok(Err(status)) => {
            upstream.observe_error(at, &status);
            status.message() == "etcdserver: permission denied"
        }
        Err(_) => false,
    };
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
