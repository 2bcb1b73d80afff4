//! watch: one key, a range or a prefix; interactive; `-- command` run per event.

use std::sync::Arc;

use etcd_api::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse, watch_request,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{self, Cmd, FlagDef, Kind, flag, flag_short};
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT};
use crate::global::Ctl;
use crate::printer::Printer;
use crate::{Cx, gofmt};

const ERR_BAD_ARGS_NUM: &str = "bad number of arguments";
const ERR_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const ERR_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const ERR_INTERACTIVE: &str = "args[0] must be 'watch' for interactive calls";

pub fn flags() -> Vec<FlagDef> {
    vec![
        flag_short("interactive", 'i', Kind::Bool, "false", "Interactive mode"),
        flag(
            "prefix",
            Kind::Bool,
            "false",
            "Watch on a prefix if prefix is set",
        ),
        flag("rev", Kind::Int, "0", "Revision to start watching"),
        flag(
            "prev-kv",
            Kind::Bool,
            "false",
            "get the previous key-value pair before the event happens",
        ),
    ]
}

#[derive(Clone, Copy, Default)]
struct Opts {
    prefix: bool,
    rev: i64,
    prev_kv: bool,
}

fn parse_line_flags(args: &[String]) -> Result<(Opts, Vec<String>), String> {
    let root = Cmd::new("watch", "").flags(flags());
    match cli::parse(&root, args) {
        Ok(inv) => Ok((
            Opts {
                prefix: inv.flags.bool("prefix"),
                rev: inv.flags.int("rev"),
                prev_kv: inv.flags.bool("prev-kv"),
            },
            inv.args,
        )),
        Err((_, cli::CliError::Flag(m))) | Err((_, cli::CliError::UnknownCommand(m))) => Err(m),
    }
}

/// etcdctl's `parseWatchArgs`: the watched key (and range end) and the command to run.
fn parse_watch_args(
    os_args: &[String],
    command_args: &[String],
    env_key: &str,
    env_range: &str,
    interactive: bool,
    opts: &mut Opts,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut raw_args: Vec<String> = os_args.to_vec();
    let mut watch_args: Vec<String> = command_args.to_vec();
    if let Some(idx) = raw_args.iter().position(|a| a == "watch") {
        raw_args = raw_args[idx + 1..].to_vec();
    }
    if interactive {
        if watch_args.first().map(String::as_str) != Some("watch") {
            return Err(ERR_INTERACTIVE.into());
        }
        watch_args.remove(0);
    }
    if !interactive {
        let exec_idx = raw_args.iter().position(|a| a == "--");
        if let Some(i) = exec_idx
            && i == raw_args.len() - 1
        {
            return Err(ERR_SEPARATOR.into());
        }
        if exec_idx.is_none() && raw_args.is_empty() && env_key.is_empty() {
            return Err(ERR_BAD_ARGS_NUM.into());
        }
        if let Some(exec_idx) = exec_idx
            && !env_key.is_empty()
        {
            let mut ridx = raw_args.len() as isize - 1;
            for widx in (0..watch_args.len()).rev() {
                if ridx >= 0 && watch_args[widx] == raw_args[ridx as usize] {
                    ridx -= 1;
                    continue;
                }
                if ridx == exec_idx as isize {
                    return Err(ERR_CONFLICT_ENV.into());
                }
            }
        }
        if exec_idx.is_none() && !watch_args.is_empty() && !env_key.is_empty() {
            return Err(ERR_CONFLICT_ENV.into());
        }
    } else {
        let exec_idx = watch_args.iter().position(|a| a == "--");
        if let Some(i) = exec_idx
            && i == watch_args.len() - 1
        {
            return Err(ERR_SEPARATOR.into());
        }
        let (_, p_args) = parse_line_flags(&watch_args)?;
        if exec_idx.is_none() && env_key.is_empty() && p_args.is_empty() {
            return Err(ERR_BAD_ARGS_NUM.into());
        }
        if exec_idx.is_none() && !p_args.is_empty() && !env_key.is_empty() {
            return Err(ERR_CONFLICT_ENV.into());
        }
    }
    let args_with_sep = if interactive {
        watch_args.clone()
    } else {
        raw_args
    };
    let sep = args_with_sep.iter().position(|a| a == "--");
    let exec_args: Vec<String> = match sep {
        Some(i) => args_with_sep[i + 1..].to_vec(),
        None => Vec::new(),
    };
    if interactive {
        let (o, pargs) = parse_line_flags(&args_with_sep)?;
        *opts = o;
        watch_args = pargs;
    }
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.to_string()];
        if !env_range.is_empty() {
            ranges.push(env_range.to_string());
        }
        ranges.extend(watch_args);
        watch_args = ranges;
    }
    let Some(idx) = sep else {
        return Ok((watch_args, Vec::new()));
    };
    let first_exec = &args_with_sep[idx + 1];
    let mut end = watch_args.len() as isize - 1;
    while end >= 0 {
        if &watch_args[end as usize] == first_exec {
            break;
        }
        end -= 1;
    }
    watch_args.truncate(end.max(0) as usize);
    Ok((watch_args, exec_args))
}

fn create_request(args: &[String], opts: Opts) -> Result<WatchCreateRequest, String> {
    if args.is_empty() {
        return Err(ERR_BAD_ARGS_NUM.into());
    }
    let mut key = crate::rawarg::bytes(&args[0]);
    let mut range_end = Vec::new();
    if args.len() == 2 {
        if opts.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".into());
        }
        range_end = crate::rawarg::bytes(&args[1]);
    }
    if opts.prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = etcd_client::prefix_end(&key);
        }
    }
    Ok(WatchCreateRequest {
        key,
        range_end,
        start_revision: opts.rev,
        prev_kv: opts.prev_kv,
        ..Default::default()
    })
}

/// `WatchResponse.Err()` of clientv3 for a canceled watch.
fn cancel_text(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".into();
    }
    if !r.cancel_reason.is_empty() {
        return r.cancel_reason.clone();
    }
    "etcdserver: mvcc: required revision is a future revision".into()
}

/// Prints the responses of one watch until it ends; runs `exec` for each event.
async fn print_watch(
    ctl: Ctl,
    req: WatchCreateRequest,
    exec: Vec<String>,
    printer: Arc<Printer>,
    progress: Option<mpsc::Receiver<()>>,
) {
    let (tx, rx) = mpsc::channel::<WatchRequest>(4);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(req)),
        })
        .await;
    if let Some(mut p) = progress {
        let tx2 = tx.clone();
        tokio::spawn(async move {
            while p.recv().await.is_some() {
                let _ = tx2
                    .send(WatchRequest {
                        request_union: Some(watch_request::RequestUnion::ProgressRequest(
                            WatchProgressRequest {},
                        )),
                    })
                    .await;
            }
        });
    }
    let mut w = ctl.client.watch.clone();
    let mut request = ctl.req(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("hasleader", "true".parse().expect("static"));
    let mut stream = match w.watch(request).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            eprintln!("watch was canceled ({})", exit::status_text(&s));
            return;
        }
    };
    let _keep_open = tx;
    while let Some(item) = stream.next().await {
        let r = match item {
            Ok(r) => r,
            Err(s) => {
                eprintln!("watch was canceled ({})", exit::status_text(&s));
                return;
            }
        };
        if r.created && r.events.is_empty() {
            // clientv3 consumes the creation; a watch refused at creation (no permission)
            // just ends.
            if r.canceled {
                return;
            }
            continue;
        }
        if r.canceled {
            eprintln!("watch was canceled ({})", cancel_text(&r));
        }
        let header_rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        if r.events.is_empty()
            && !r.canceled
            && !r.created
            && r.compact_revision == 0
            && header_rev != 0
        {
            println!("progress notify: {header_rev}");
        }
        printer.watch(&r);
        if !exec.is_empty() {
            for ev in &r.events {
                let kv = ev.kv.clone().unwrap_or_default();
                let status = tokio::process::Command::new(&exec[0])
                    .args(&exec[1..])
                    .env("ETCD_WATCH_REVISION", header_rev.to_string())
                    .env(
                        "ETCD_WATCH_EVENT_TYPE",
                        gofmt::quote(if ev.r#type == 1 { "DELETE" } else { "PUT" }),
                    )
                    .env("ETCD_WATCH_KEY", gofmt::quote_bytes(&kv.key))
                    .env("ETCD_WATCH_VALUE", gofmt::quote_bytes(&kv.value))
                    .status()
                    .await;
                let err = match status {
                    Ok(s) if s.success() => None,
                    Ok(s) => Some(match s.code() {
                        Some(c) => format!("exit status {c}"),
                        None => "signal: killed".to_string(),
                    }),
                    Err(e) => Some(format!("exec: {}: {}", gofmt::quote(&exec[0]), e)),
                };
                if let Some(e) = err {
                    let q: Vec<String> = exec.iter().map(|a| gofmt::quote(a)).collect();
                    eprintln!("command [{}] error ({e})", q.join(" "));
                    exit::exit(1);
                }
            }
        }
        if r.canceled {
            return;
        }
    }
}

pub async fn watch(cx: Cx) -> i32 {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            &format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                gofmt::quote(&env_range)
            ),
        );
    }
    let printer = Arc::new(cx.printer);
    if cx.flags.bool("interactive") {
        return interactive(
            &cx.flags,
            crate::global::ClientCfg::from_flags(&cx.flags),
            printer,
            &cx.os_args,
            &env_key,
            &env_range,
        )
        .await;
    }
    let mut opts = Opts {
        prefix: cx.flags.bool("prefix"),
        rev: cx.flags.int("rev"),
        prev_kv: cx.flags.bool("prev-kv"),
    };
    let (args, exec) = match parse_watch_args(
        &cx.os_args,
        &cx.args,
        &env_key,
        &env_range,
        false,
        &mut opts,
    ) {
        Ok(x) => x,
        Err(e) => exit::fail(EXIT_BAD_ARGS, &e),
    };
    let ctl = crate::global::ClientCfg::from_flags(&cx.flags)
        .must_connect(None)
        .await;
    let req = create_request(&args, opts).unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &e));
    print_watch(ctl, req, exec, printer, None).await;
    exit::fail(EXIT_INTERRUPTED, "watch is canceled by the server")
}

async fn interactive(
    _flags: &cli::Flags,
    cfg: crate::global::ClientCfg,
    printer: Arc<Printer>,
    os_args: &[String],
    env_key: &str,
    env_range: &str,
) -> i32 {
    let ctl = cfg.must_connect(None).await;
    let (line_tx, mut line_rx) = mpsc::channel::<Result<String, String>>(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = String::new();
            let r = match stdin.read_line(&mut line) {
                Ok(0) => Err("EOF".to_string()),
                Ok(_) if !line.ends_with('\n') => Err("EOF".to_string()),
                Ok(_) => Ok(line),
                Err(e) => Err(e.to_string()),
            };
            let end = r.is_err();
            if line_tx.blocking_send(r).is_err() || end {
                return;
            }
        }
    });
    let mut progress_senders: Vec<mpsc::Sender<()>> = Vec::new();
    while let Some(line) = line_rx.recv().await {
        let l = match line {
            Ok(l) => l,
            Err(e) => exit::fail(
                EXIT_INVALID_INPUT,
                &format!("Error reading watch request line: {e}"),
            ),
        };
        let l = l.strip_suffix('\n').unwrap_or(&l).to_string();
        let args = crate::commands::kv::argify(&l);
        if args.is_empty() {
            eprintln!("Invalid command: {l} (watch and progress supported)");
            continue;
        }
        match args[0].as_str() {
            "watch" => {
                if args.len() < 2 && env_key.is_empty() {
                    eprintln!("Invalid command {l} (command type or key is not provided)");
                    continue;
                }
                let mut opts = Opts::default();
                let (wargs, exec) =
                    match parse_watch_args(os_args, &args, env_key, env_range, true, &mut opts) {
                        Ok(x) => x,
                        Err(e) => exit::fail(EXIT_BAD_ARGS, &e),
                    };
                let req = match create_request(&wargs, opts) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("Invalid command {l} ({e})");
                        continue;
                    }
                };
                let (ptx, prx) = mpsc::channel(4);
                progress_senders.push(ptx);
                tokio::spawn(print_watch(
                    ctl.clone(),
                    req,
                    exec,
                    printer.clone(),
                    Some(prx),
                ));
            }
            "progress" => {
                if progress_senders.is_empty() {
                    continue;
                }
                for p in &progress_senders {
                    if p.send(()).await.is_err() {
                        exit::fail(EXIT_ERROR, "watch stream closed");
                    }
                }
            }
            _ => {
                eprintln!("Invalid command {l} (only support watch)");
                continue;
            }
        }
    }
    exit::fail(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_watch_and_exec_args() {
        let mut o = Opts::default();
        let (w, e) = parse_watch_args(
            &s(&["etcdctl", "watch", "foo", "--", "echo", "hi"]),
            &s(&["foo", "echo", "hi"]),
            "",
            "",
            false,
            &mut o,
        )
        .unwrap();
        assert_eq!(w, s(&["foo"]));
        assert_eq!(e, s(&["echo", "hi"]));
        let err = parse_watch_args(
            &s(&["etcdctl", "watch", "foo", "--"]),
            &s(&["foo"]),
            "",
            "",
            false,
            &mut o,
        );
        assert_eq!(err.unwrap_err(), ERR_SEPARATOR);
        let (w, _) = parse_watch_args(
            &s(&["x"]),
            &s(&["watch", "--prefix", "k"]),
            "",
            "",
            true,
            &mut o,
        )
        .unwrap();
        assert_eq!(w, s(&["k"]));
        assert!(o.prefix);
        let err = parse_watch_args(
            &s(&["etcdctl", "watch", "foo"]),
            &s(&["foo"]),
            "k",
            "",
            false,
            &mut o,
        );
        assert_eq!(err.unwrap_err(), ERR_CONFLICT_ENV);
    }
}
