//! `benchmark`: etcd 3.4's low-level benchmark tool for the v3 API. Global flags say how to
//! reach the cluster and how many connections and clients to use; each subcommand generates
//! one kind of request; the run ends with etcd's report (`report.rs`).

mod cli;
mod commands;
mod keys;
mod lease_scale;
mod mutex;
mod mvcc;
mod report;
mod run;
mod stm;
mod watch;
mod watch_get;
mod watch_latency;
mod watch_scale;

// jemalloc, as the server: the load generator shares the machine with the members it drives,
// and glibc's malloc/free were 18% of its CPU under put with 1000 clients. Every cycle it
// saves goes to the server under test, whichever server that is.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::Parser;
use etcd_client::ConnectOptions;

use crate::cli::{Cli, Command, Global};
use crate::report::Precision;
use crate::run::{BenchError, ConnectConfig};

fn connect_config(global: &Global) -> Result<ConnectConfig, BenchError> {
    let mut options = ConnectOptions::default();
    if !global.dial_timeout.is_zero() {
        options.dial_timeout = global.dial_timeout;
    }
    let tls = global.cacert.is_some() || global.cert.is_some() || global.key.is_some();
    if tls {
        let info = etcd_transport::TlsInfo {
            cert_file: global.cert.clone(),
            key_file: global.key.clone(),
            trusted_ca_file: global.cacert.clone(),
            ..Default::default()
        };
        let config = info
            .client_config(&[b"h2"])
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        options.tls = Some(config);
    }
    let credentials = match &global.user {
        None => None,
        Some(spec) => Some(etcd_client::Credentials::parse(spec).ok_or_else(|| {
            BenchError::Usage(format!(
                "--user {spec:?} needs a password: give --user name:password"
            ))
        })?),
    };
    Ok(ConnectConfig {
        credentials,
        endpoints: run::normalize_endpoints(&global.endpoints, tls),
        conns: global.conns,
        clients: global.clients,
        target_leader: global.target_leader,
        options,
    })
}

/// A client on a connection of its own.
async fn own_connection(config: &ConnectConfig) -> Result<etcd_client::Client, BenchError> {
    let one = ConnectConfig {
        conns: 1,
        clients: 1,
        ..config.clone()
    };
    run::make_clients(&one)
        .await?
        .pop()
        .ok_or_else(|| BenchError::Usage("no client".into()))
}

fn error_count(stats: &report::Stats) -> usize {
    stats.errors.values().sum()
}

async fn benchmark(cli: Cli) -> Result<(), BenchError> {
    let precision = if cli.global.precise {
        Precision::Full
    } else {
        Precision::Fixed4
    };
    // The in-process benchmarks need no connection.
    if let Command::Mvcc(mvcc) = &cli.command {
        let cli::MvccCommand::Put(put) = &mvcc.command;
        let stats = mvcc::put(mvcc.batch_interval, mvcc.batch_limit, put)?;
        print!("{}", stats.render(precision, cli.global.sample));
        return Ok(());
    }
    commands::check_flags(&cli.command)?;
    let config = connect_config(&cli.global)?;
    let clients = run::make_clients(&config).await?;
    let stats = match cli.command {
        Command::Mvcc(_) => return Ok(()),
        Command::Stm(args) => commands::stm(clients, args).await?,
        Command::Put(args) => {
            let check_hashkv = args.check_hashkv;
            let stats = commands::put(clients, args).await?;
            println!("{}", stats.render(precision, cli.global.sample));
            if check_hashkv {
                let endpoint = config.endpoints.first().cloned().unwrap_or_default();
                // etcd names the endpoint as given on the command line.
                let shown = cli.global.endpoints.first().map(|e| e.trim()).unwrap_or("");
                let summary = commands::hash_kv_summary(
                    &endpoint,
                    shown,
                    config.options.clone(),
                    config.credentials.clone(),
                )
                .await?;
                println!("{summary}");
            }
            return Ok(());
        }
        Command::Range(args) => commands::range(clients, args).await?,
        Command::Authenticate(args) => commands::authenticate(clients, args).await?,
        Command::TxnPut(args) => commands::txn_put(clients, args).await?,
        Command::LeaseKeepalive(args) => commands::lease_keepalive(clients, args).await?,
        Command::Watch(args) => {
            return watch::watch(clients, config.conns, args, precision).await;
        }
        Command::WatchGet(args) => {
            let get_client = own_connection(&config).await?;
            let stats = watch_get::watch_get(clients, get_client, args).await?;
            print!(
                "Get during watch summary:\n{}",
                stats.render(precision, cli.global.sample)
            );
            return Ok(());
        }
        Command::WatchScale(args) => {
            // The puts go over their own connection, as watch-latency's.
            let put_client = own_connection(&config).await?;
            return watch_scale::watch_scale(clients, put_client, args, precision).await;
        }
        Command::LeaseScale(args) => {
            let put_client = own_connection(&config).await?;
            return lease_scale::lease_scale(clients, put_client, args, precision).await;
        }
        Command::WatchLatency(args) => {
            // The puts go over their own connection, as etcd's.
            let put_client = own_connection(&config).await?;
            watch_latency::watch_latency(
                clients,
                put_client,
                args.put_total,
                args.put_rate,
                args.key_size,
                args.val_size,
            )
            .await?
        }
        Command::TxnMixed(args) => {
            let (reads, writes) = commands::txn_mixed(clients, args).await?;
            print!(
                "Total Read Ops: {}\nDetails:",
                reads.latencies.len() + error_count(&reads)
            );
            println!("{}", reads.render(precision, cli.global.sample));
            print!(
                "Total Write Ops: {}\nDetails:",
                writes.latencies.len() + error_count(&writes)
            );
            println!("{}", writes.render(precision, cli.global.sample));
            return Ok(());
        }
    };
    println!("{}", stats.render(precision, cli.global.sample));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("benchmark: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(benchmark(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}
