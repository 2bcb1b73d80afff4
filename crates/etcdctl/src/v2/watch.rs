//! `watch` and `exec-watch`: long polls on `/v2/keys/<key>?wait=true`, one event each, the
//! next asked from the index after the last one seen (etcd's `httpWatcher`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::Stdio;

use super::client::{Client, ClientError};
use super::keys::{ERR_EMPTY_BODY, Response, unmarshal_response, wait_action};
use super::output::print_response_key;
use super::{
    Ctx, EXIT_BAD_ARGS, EXIT_SERVER_ERROR, Exit, R, eprint, eprint_arg, exit_on_interrupt,
    handle_error, handle_error_msg, must_new_client, out_line,
};
use crate::gofmt;
use crate::rawarg;

/// etcd's `httpWatcher`.
struct Watcher {
    key: String,
    wait_index: u64,
    recursive: bool,
}

impl Watcher {
    fn new(key: &str, after_index: u64, recursive: bool) -> Watcher {
        Watcher {
            key: key.to_string(),
            wait_index: if after_index > 0 {
                after_index.wrapping_add(1)
            } else {
                0
            },
            recursive,
        }
    }

    /// The next event. A poll the server ends without one (an empty answer) is asked again.
    async fn next(&mut self, hc: &mut Client) -> Result<Response, ClientError> {
        loop {
            let act = wait_action(&self.key, self.wait_index, self.recursive);
            let http = hc.do_action(&act, None).await?;
            match unmarshal_response(&http) {
                Err(ClientError::Other(e)) if e.text == ERR_EMPTY_BODY => continue,
                Err(e) => return Err(e),
                Ok(r) => {
                    let Some(node) = &r.node else {
                        return Err(ClientError::other("client: response has no node"));
                    };
                    self.wait_index = node.modified_index.wrapping_add(1);
                    return Ok(r);
                }
            }
        }
    }
}

pub async fn watch(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let Some(key) = ctx.arg(0) else {
        return Err(handle_error_msg(EXIT_BAD_ARGS, "key required"));
    };
    let recursive = ctx.bool("recursive");
    let forever = ctx.bool("forever");
    let mut w = Watcher::new(key, ctx.int("after-index") as u64, recursive);
    exit_on_interrupt();
    loop {
        let resp = w
            .next(&mut hc)
            .await
            .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
        let Some(node) = &resp.node else { continue };
        if node.dir {
            continue;
        }
        if recursive {
            out_line(&format!("[{}] {}", resp.action, node.key));
        }
        print_response_key(&resp, &ctx.output())
            .map_err(|e| handle_error_msg(EXIT_SERVER_ERROR, &e))?;
        if !forever {
            return Ok(());
        }
    }
}

/// Go's `exec.LookPath` for a name without a slash.
fn look_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let p = dir.join(OsString::from_vec(rawarg::bytes(name)));
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Some(p);
        }
    }
    None
}

/// Starts the command for one event, with `ETCD_WATCH_*` describing it; it runs on its own,
/// output going where ours goes.
fn start(cmd_args: &[String], resp: &Response) -> Result<(), String> {
    let name = &cmd_args[0];
    let program = if name.contains('/') {
        PathBuf::from(OsString::from_vec(rawarg::bytes(name)))
    } else {
        look_path(name).ok_or_else(|| {
            format!(
                "exec: {}: executable file not found in $PATH",
                gofmt::quote_bytes(&rawarg::bytes(name))
            )
        })?
    };
    let node = resp.node.clone().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg0(OsString::from_vec(rawarg::bytes(name)))
        .args(
            cmd_args[1..]
                .iter()
                .map(|a| OsString::from_vec(rawarg::bytes(a))),
        )
        .env("ETCD_WATCH_ACTION", &resp.action)
        .env("ETCD_WATCH_MODIFIED_INDEX", node.modified_index.to_string())
        .env("ETCD_WATCH_KEY", &node.key)
        .env("ETCD_WATCH_VALUE", &node.value)
        .stdin(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "fork/exec {}: {}",
            program.display(),
            super::client::errno_text(&e)
        )
    })?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

pub async fn exec_watch(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let args = ctx.args();
    if args.len() < 2 {
        return Err(handle_error_msg(
            EXIT_BAD_ARGS,
            "key and command to exec required",
        ));
    }
    // A `--` the flag parser left in place separates the key from the command; otherwise
    // the key comes last (etcd's etcdctl reads it so).
    let found_sep = args.iter().skip(1).any(|a| a == "--");
    let (key, cmd_args) = if found_sep {
        (&args[0], &args[2..])
    } else {
        (&args[args.len() - 1], &args[..args.len() - 1])
    };
    if cmd_args.is_empty() {
        return Err(handle_error_msg(
            EXIT_BAD_ARGS,
            "key and command to exec required",
        ));
    }
    let mut w = Watcher::new(key, ctx.int("after-index") as u64, ctx.bool("recursive"));
    exit_on_interrupt();
    loop {
        let resp = w
            .next(&mut hc)
            .await
            .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
        let Some(node) = &resp.node else { continue };
        if node.dir {
            eprint(&format!("Ignored dir {} change\n", node.key));
            continue;
        }
        if let Err(e) = start(cmd_args, &resp) {
            eprint_arg(&e);
            return Err(Exit(1));
        }
    }
}
