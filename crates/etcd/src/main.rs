//! The `etcd` binary: parse flags, environment and config file exactly as etcd 3.4 does, set up
//! logging, then hand a `ServerConfig` to the server library and serve until stopped.

mod config;
mod discovery;
mod gateway;
mod grpc_proxy;
mod lifecycle_log;
mod log_sinks;
mod logging;
mod subcommand_flags;
mod systemd;

// jemalloc rather than glibc's malloc: the request path allocates many small, short-lived
// buffers across threads, and glibc spent ~16% of a member's CPU in malloc/free under a write
// load (see docs/PERFORMANCE.md); jemalloc cut the CPU per put by about 8%.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;
use std::time::Duration;

use config::{Action, Config};
use etcd_server::{ServerConfig, TlsSettings};
use etcd_transport::TlsInfo;

fn main() -> ExitCode {
    let parsed = match config::parse(std::env::args_os().skip(1), std::env::vars_os()) {
        Ok(parsed) => parsed,
        Err(e) => {
            if e.shows_usage() {
                eprintln!("{e}");
                eprint!("{}", config::usage());
            } else {
                eprintln!("error verifying flags, {e}. See 'etcd --help'.");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let cfg = match parsed.action {
        Action::Run(cfg) => cfg,
        Action::PrintVersion => {
            print!("{}", config::version());
            return ExitCode::SUCCESS;
        }
        Action::PrintHelp => {
            // As etcd: the usage (which names --config-file) on stderr, the flags on stdout.
            eprint!("{}", config::usage());
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Action::Subcommand { name, args } if name == "gateway" => return gateway::main(args),
        Action::Subcommand { name, args } if name == "grpc-proxy" => {
            return grpc_proxy::main(args);
        }
        Action::Subcommand { name, .. } => {
            eprintln!("etcd {name}: this subcommand is not supported yet");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = log_sinks::init(&cfg) {
        eprintln!("error verifying flags, {e}. See 'etcd --help'.");
        return ExitCode::FAILURE;
    }
    for notice in &parsed.notices {
        tracing::info!("{notice}");
    }
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // A task woken by the running task normally runs next, in the "LIFO slot". Here that task
    // is usually a client connection's HTTP/2 task, woken by each request handler that
    // finishes: with the slot it runs, and writes, once per response while the connection's
    // other responses wait in the queue behind it; without, it runs after them and writes
    // them all at once. Measured on 3 members (docs/PERFORMANCE.md): CPU per request -20% on
    // put and range with 1000 clients, single-client latency unchanged.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // A member without a WAL settles its initial cluster first (static, discovery or DNS
        // SRV) and checks it as etcd does; one with a WAL starts from its data dir.
        let wal_dir = cfg
            .wal_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("member").join("wal"));
        let mut cfg = cfg;
        lifecycle_log::starting(&cfg, discovery::has_wal(&wal_dir));
        if let Err(failure) = discovery::settle_initial_cluster(&mut cfg, &wal_dir).await {
            failure.report(&cfg);
            eprintln!("etcd: {}", failure.summary());
            return ExitCode::FAILURE;
        }
        serve(&cfg).await
    })
}

async fn serve(cfg: &Config) -> ExitCode {
    let mut running = match etcd_server::start(server_config(cfg)).await {
        Ok(r) => r,
        Err(e @ etcd_server::ServerError::DataInconsistency(_)) => {
            // etcd's wording, which operators and etcd's tests look for.
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start etcd");
            eprintln!("etcd: {e}");
            return ExitCode::FAILURE;
        }
    };
    lifecycle_log::now_serving(cfg, running.server.member_id);
    // READY=1 for systemd once the member has joined and serves, as etcd sends it.
    let ready = running.on_ready();
    tokio::spawn(async move {
        ready.await;
        systemd::notify_ready();
    });
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("etcd: cannot install a SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        e = running.fatal() => {
            if matches!(e, etcd_server::ServerError::Removed) {
                // Being removed is a normal end for a member: etcd exits 0 then.
                tracing::error!("{e}");
                tracing::info!("the data-dir used by this member must be removed.");
                return ExitCode::SUCCESS;
            }
            tracing::error!(error = %e, "stopping after a fatal error");
            eprintln!("etcd: {e}");
            ExitCode::FAILURE
        }
        _ = tokio::signal::ctrl_c() => {
            lifecycle_log::closing(cfg, "interrupt");
            systemd::notify_stopping();
            running.shutdown().await;
            lifecycle_log::closed(cfg);
            ExitCode::SUCCESS
        }
        _ = sigterm.recv() => {
            lifecycle_log::closing(cfg, "terminated");
            systemd::notify_stopping();
            running.shutdown().await;
            lifecycle_log::closed(cfg);
            ExitCode::SUCCESS
        }
    }
}

fn server_config(cfg: &Config) -> ServerConfig {
    let initial_cluster = cfg
        .initial_cluster
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(|u| (m.name.clone(), u.clone())))
        .collect();
    let tls = |t: &config::TlsConfig, allowed: bool| TlsSettings {
        info: TlsInfo {
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            trusted_ca_file: t.trusted_ca_file.clone(),
            client_cert_auth: t.client_cert_auth,
            crl_file: t.crl_file.clone(),
            cipher_suites: cfg.cipher_suites.clone(),
            allowed_cn: if allowed { t.allowed_cn.clone() } else { None },
            allowed_hostname: if allowed {
                t.allowed_hostname.clone()
            } else {
                None
            },
            skip_client_san_verify: t.skip_client_san_verification,
            ..TlsInfo::default()
        },
        auto: t.auto_tls,
    };
    ServerConfig {
        name: cfg.name.clone(),
        data_dir: cfg.data_dir.clone(),
        wal_dir: cfg.wal_dir.clone(),
        listen_client_urls: cfg.listen_client_urls.clone(),
        listen_metrics_urls: cfg.listen_metrics_urls.clone(),
        metrics_extensive: cfg.metrics == "extensive",
        advertise_client_urls: cfg.advertise_client_urls.clone(),
        listen_peer_urls: cfg.listen_peer_urls.clone(),
        initial_advertise_peer_urls: cfg.initial_advertise_peer_urls.clone(),
        initial_cluster,
        initial_cluster_token: cfg.initial_cluster_token.clone(),
        initial_cluster_state_new: cfg.initial_cluster_state == config::ClusterState::New,
        snapshot_count: cfg.snapshot_count,
        heartbeat_interval: Duration::from_millis(cfg.heartbeat_interval_ms),
        election_timeout: Duration::from_millis(cfg.election_timeout_ms),
        quota_backend_bytes: cfg.quota_backend_bytes_effective().unwrap_or(u64::MAX),
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops as usize,
        strict_reconfig_check: cfg.strict_reconfig_check,
        pre_vote: cfg.pre_vote,
        backend_batch_interval: if cfg.backend_batch_interval.is_zero() {
            Duration::from_millis(100)
        } else {
            cfg.backend_batch_interval
        },
        backend_batch_limit: if cfg.backend_batch_limit <= 0 {
            10_000
        } else {
            cfg.backend_batch_limit as usize
        },
        watch_progress_notify_interval: cfg.experimental_watch_progress_notify_interval,
        client_tls: tls(&cfg.client_tls, false),
        peer_tls: tls(&cfg.peer_tls, true),
        cors: cfg.cors.clone(),
        enable_v2: cfg.enable_v2,
        enable_ui: cfg.enable_ui,
        // etcd falls back to its default cost (with a warning) outside bcrypt's 4..=31.
        bcrypt_cost: if (4..=31).contains(&cfg.bcrypt_cost) {
            cfg.bcrypt_cost as u32
        } else {
            10
        },
        auth_token_ttl: Duration::from_secs(cfg.auth_token_ttl_secs),
        initial_corrupt_check: cfg.experimental_initial_corrupt_check,
        corrupt_check_time: cfg.experimental_corrupt_check_time,
        snapshot_catchup_entries: cfg.experimental_snapshot_catchup_entries,
        max_wals: cfg.max_wals,
        max_concurrent_streams: cfg.max_concurrent_streams,
        max_snapshots: cfg.max_snapshots,
        force_new_cluster: cfg.force_new_cluster,
        unsafe_no_fsync: cfg.unsafe_no_fsync,
        auth_token: cfg.auth_token.clone(),
    }
}
