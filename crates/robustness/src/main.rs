//! `robustness`: one randomized run against a cluster of a given etcd binary.
//!
//! ```text
//! robustness [--binary PATH] [--members N] [--duration 30s] [--seed N] [--clients N]
//!            [--keys N] [--faults kill,kill-all,pause] [--segment-watchers N]
//!            [--compaction on|off] [--power-loss on|off] [--progress-requests on|off]
//!            [--failpoint NAME=TERM]...
//!            [--dir DIR]
//! ```
//! The faults: kill, kill-all, pause, partition, one-way, crash-point, stall-disk; the last
//! two, `--power-loss` and `--failpoint` need a binary built with failpoints
//! (`cargo build --release -p etcd --features failpoints`).
//! or `robustness --check history.json` to check a saved history again.
//!
//! Exits 0 when the history checks out, 1 when it does not (the report names what broke and
//! where the history is), 2 on bad arguments or when the cluster never came up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use robustness::nemesis::Fault;
use robustness::run::{RunConfig, run};

fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (e.g. 30s, 10m)");
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(bad()),
    }
}

fn on_off(flag: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("{flag} on|off, not {other:?}")),
    }
}

fn parse(args: &[String]) -> Result<RunConfig, String> {
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("etcd")))
        .unwrap_or_else(|| PathBuf::from("etcd"));
    let mut cfg = RunConfig {
        binary: beside_us,
        members: 3,
        duration: Duration::from_secs(30),
        seed: 1,
        clients: 4,
        keys: 5,
        faults: vec![Fault::KillOne, Fault::PauseOne],
        segment_watchers: 2,
        compaction: true,
        power_loss: false,
        progress_requests: true,
        failpoints: Vec::new(),
        dir: std::env::temp_dir().join(format!("robustness-{}", std::process::id())),
    };
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))?;
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
        match args[i].as_str() {
            "--binary" => cfg.binary = value.into(),
            "--members" => cfg.members = number(value)? as usize,
            "--duration" => cfg.duration = duration(value)?,
            "--seed" => cfg.seed = number(value)?,
            "--clients" => cfg.clients = number(value)? as usize,
            "--keys" => cfg.keys = number(value)?.max(1) as usize,
            "--faults" => {
                cfg.faults = value
                    .split(',')
                    .filter(|f| !f.is_empty() && *f != "none")
                    .map(Fault::parse)
                    .collect::<Result<_, _>>()?
            }
            "--dir" => cfg.dir = value.into(),
            "--segment-watchers" => cfg.segment_watchers = number(value)? as usize,
            "--compaction" => cfg.compaction = on_off("--compaction", value)?,
            "--power-loss" => cfg.power_loss = on_off("--power-loss", value)?,
            "--progress-requests" => cfg.progress_requests = on_off("--progress-requests", value)?,
            "--failpoint" => {
                let (name, term) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--failpoint NAME=TERM, not {value:?}"))?;
                cfg.failpoints.push((name.to_string(), term.to_string()));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    if cfg.members == 0 || cfg.clients == 0 {
        return Err("--members and --clients must be at least 1".into());
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, path] = args.as_slice()
        && flag == "--check"
    {
        let history: robustness::history::History = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("robustness: {path}: {e}");
                return ExitCode::from(2);
            }
        };
        let report = robustness::checker::check(&history);
        print!("{report}");
        return if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let cfg = match parse(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("robustness: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg).await {
        Ok(result) => {
            print!("{}", result.report);
            println!(
                "{} faults injected; history in {}",
                result.faults.len(),
                result.history_path.display()
            );
            if result.report.ok() {
                ExitCode::SUCCESS
            } else {
                println!(
                    "reproduce with --seed {} (report: {})",
                    cfg.seed,
                    cfg.dir.join("report.txt").display()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("robustness: {e}");
            ExitCode::from(2)
        }
    }
}
