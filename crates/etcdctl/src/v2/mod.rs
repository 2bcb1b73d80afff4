//! `ETCDCTL_API=2`: etcd 3.4's v2 etcdctl, as a drop-in — the same commands, flags,
//! `ETCDCTL_*` variables, output and exit codes, over the v2 HTTP API.
//!
//! - `cli.rs`: the command line as urfave/cli v1 reads it, and its help texts;
//! - `client.rs`: etcd's v2 Go client (endpoints, sync, retries, timeouts, errors) over hyper;
//! - `gourl.rs`, `json.rs`: Go's URL, path and JSON rules that output and requests depend on;
//! - `output.rs`: the `simple`, `extended` and `json` printers of a keys answer;
//! - one file per command group: `keys.rs`, `watch.rs`, `member.rs`, `cluster_health.rs`,
//!   `auth.rs` (auth, user, role).
//!
//! Commands fail as etcdctl's do: a message on stderr and an exit code
//! ([`EXIT_BAD_ARGS`] and the others, from etcdctl's `ctlv2/command/error.go`), returned as
//! [`Exit`] up to [`run`].

mod auth;
mod backup;
mod cli;
mod client;
mod cluster_health;
mod gourl;
mod json;
mod keys;
mod member;
mod output;
mod watch;

use std::io::Write;
use std::time::Instant;

use etcd_transport::TlsInfo;

use self::cli::{AppDef, CmdDef, Invocation, Kind, Parsed, flag};
use self::client::{Client, ClientError, Config, DEFAULT_DIAL_TIMEOUT, Transport};
use self::gourl::GoUrl;
use crate::rawarg;

pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_BAD_ARGS: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_SERVER_ERROR: i32 = 4;
pub const EXIT_CLUSTER_NOT_HEALTHY: i32 = 5;

/// A command stopped with this exit code, its message already printed.
#[derive(Debug, PartialEq, Eq)]
pub struct Exit(pub i32);

pub type R = Result<(), Exit>;

const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:2379,http://127.0.0.1:4001";

fn app() -> AppDef {
    use Kind::*;
    let ttl = || flag("ttl", Int, "0", "key time-to-live in seconds");
    let set_desc = "Set sets the value of a key.\n\n   When <value> begins with '-', <value> is interpreted as a flag.\n   Insert '--' for workaround:\n\n   $ set -- <key> <value>";
    let roles = || vec![flag("roles", Slice, "", "List of roles to grant or revoke")];
    let grant_flags = |verb: &str| {
        if verb == "grant" {
            vec![
                flag("path", Str, "", "Path granted for the role to access"),
                flag("read", Bool, "", "Grant read-only access"),
                flag("write", Bool, "", "Grant write-only access"),
                flag("readwrite, rw", Bool, "", "Grant read-write access"),
            ]
        } else {
            vec![
                flag("path", Str, "", "Path revoked for the role to access"),
                flag("read", Bool, "", "Revoke read access"),
                flag("write", Bool, "", "Revoke write access"),
                flag("readwrite, rw", Bool, "", "Revoke read-write access"),
            ]
        }
    };
    AppDef {
        name: "etcdctl",
        usage: "A simple command line client for etcd.",
        version: crate::VERSION,
        version_text: |v| format!("etcdctl version: {v}\nAPI version: 2\n"),
        flags: vec![
            flag(
                "debug",
                Bool,
                "",
                "output cURL commands which can be used to reproduce the request",
            ),
            flag(
                "no-sync",
                Bool,
                "",
                "don't synchronize cluster information before sending request",
            ),
            flag(
                "output, o",
                Str,
                "simple",
                "output response in the given format (`simple`, `extended` or `json`)",
            ),
            flag(
                "discovery-srv, D",
                Str,
                "",
                "domain name to query for SRV records describing cluster endpoints",
            ),
            flag(
                "insecure-discovery",
                Bool,
                "",
                "accept insecure SRV records describing cluster endpoints",
            ),
            flag(
                "peers, C",
                Str,
                "",
                "DEPRECATED - \"--endpoints\" should be used instead",
            ),
            flag(
                "endpoint",
                Str,
                "",
                "DEPRECATED - \"--endpoints\" should be used instead",
            ),
            flag(
                "endpoints",
                Str,
                "",
                "a comma-delimited list of machine addresses in the cluster (default: \"http://127.0.0.1:2379,http://127.0.0.1:4001\")",
            ),
            flag(
                "cert-file",
                Str,
                "",
                "identify HTTPS client using this SSL certificate file",
            ),
            flag(
                "key-file",
                Str,
                "",
                "identify HTTPS client using this SSL key file",
            ),
            flag(
                "ca-file",
                Str,
                "",
                "verify certificates of HTTPS-enabled servers using this CA bundle",
            ),
            flag(
                "username, u",
                Str,
                "",
                "provide username[:password] and prompt if password is not supplied.",
            ),
            flag("timeout", Dur, "2s", "connection timeout per request"),
            flag(
                "total-timeout",
                Dur,
                "5s",
                "timeout for the command execution (except watch)",
            ),
            // Ours: not in etcd 3.4's v2 etcdctl, so not in its help either.
            flag(
                "insecure-skip-tls-verify",
                Bool,
                "",
                "skip server certificate verification",
            )
            .hide(),
            flag(
                "password",
                Str,
                "",
                "password for authentication (--username is then the user name only)",
            )
            .hide(),
        ],
        commands: vec![
            CmdDef::new("backup", "backup an etcd directory", " ").flags(vec![
                flag("data-dir", Str, "", "Path to the etcd data dir"),
                flag("wal-dir", Str, "", "Path to the etcd wal dir"),
                flag("backup-dir", Str, "", "Path to the backup dir"),
                flag("backup-wal-dir", Str, "", "Path to the backup wal dir"),
                flag("with-v3", Bool, "", "Backup v3 backend data"),
            ]),
            CmdDef::new(
                "cluster-health",
                "check the health of the etcd cluster",
                " ",
            )
            .flags(vec![flag(
                "forever, f",
                Bool,
                "",
                "forever check the health every 10 second until CTRL+C",
            )]),
            CmdDef::new("mk", "make a new key with a given value", "<key> <value>").flags(vec![
                flag(
                    "in-order",
                    Bool,
                    "",
                    "create in-order key under directory <key>",
                ),
                ttl(),
            ]),
            CmdDef::new("mkdir", "make a new directory", "<key>").flags(vec![ttl()]),
            CmdDef::new("rm", "remove a key or a directory", "<key>").flags(vec![
                flag(
                    "dir",
                    Bool,
                    "",
                    "removes the key if it is an empty directory or a key-value pair",
                ),
                flag(
                    "recursive, r",
                    Bool,
                    "",
                    "removes the key and all child keys(if it is a directory)",
                ),
                flag("with-value", Str, "", "previous value"),
                flag("with-index", Int, "0", "previous index"),
            ]),
            CmdDef::new(
                "rmdir",
                "removes the key if it is an empty directory or a key-value pair",
                "<key>",
            ),
            CmdDef::new("get", "retrieve the value of a key", "<key>").flags(vec![
                flag("sort", Bool, "", "returns result in sorted order"),
                flag("quorum, q", Bool, "", "require quorum for get request"),
            ]),
            CmdDef::new("ls", "retrieve a directory", "[key]").flags(vec![
                flag("sort", Bool, "", "returns result in sorted order"),
                flag(
                    "recursive, r",
                    Bool,
                    "",
                    "returns all key names recursively for the given path",
                ),
                flag("p", Bool, "", "append slash (/) to directories"),
                flag("quorum, q", Bool, "", "require quorum for get request"),
            ]),
            CmdDef::new("set", "set the value of a key", "<key> <value>")
                .description(set_desc)
                .flags(vec![
                    ttl(),
                    flag("swap-with-value", Str, "", "previous value"),
                    flag("swap-with-index", Int, "0", "previous index"),
                ]),
            CmdDef::new(
                "setdir",
                "create a new directory or update an existing directory TTL",
                "<key>",
            )
            .flags(vec![ttl()]),
            CmdDef::new(
                "update",
                "update an existing key with a given value",
                "<key> <value>",
            )
            .flags(vec![ttl()]),
            CmdDef::new("updatedir", "update an existing directory", "<key> <value>")
                .flags(vec![ttl()]),
            CmdDef::new("watch", "watch a key for changes", "<key>").flags(vec![
                flag("forever, f", Bool, "", "forever watch a key until CTRL+C"),
                flag("after-index", Int, "0", "watch after the given index"),
                flag(
                    "recursive, r",
                    Bool,
                    "",
                    "returns all values for key and child keys",
                ),
            ]),
            CmdDef::new(
                "exec-watch",
                "watch a key for changes and exec an executable",
                "<key> <command> [args...]",
            )
            .flags(vec![
                flag("after-index", Int, "0", "watch after the given index"),
                flag(
                    "recursive, r",
                    Bool,
                    "",
                    "watch all values for key and child keys",
                ),
            ]),
            CmdDef::new("member", "member add, remove and list subcommands", "").subs(vec![
                CmdDef::new("list", "enumerate existing cluster members", " "),
                CmdDef::new(
                    "add",
                    "add a new member to the etcd cluster",
                    "<name> <peerURL>",
                ),
                CmdDef::new(
                    "remove",
                    "remove an existing member from the etcd cluster",
                    "<memberID>",
                ),
                CmdDef::new(
                    "update",
                    "update an existing member in the etcd cluster",
                    "<memberID> <peerURLs>",
                ),
            ]),
            CmdDef::new("user", "user add, grant and revoke subcommands", "").subs(vec![
                CmdDef::new("add", "add a new user for the etcd cluster", "<user>"),
                CmdDef::new("get", "get details for a user", "<user>"),
                CmdDef::new("list", "list all current users", "<user>"),
                CmdDef::new("remove", "remove a user for the etcd cluster", "<user>"),
                CmdDef::new("grant", "grant roles to an etcd user", "<user>").flags(roles()),
                CmdDef::new("revoke", "revoke roles for an etcd user", "<user>").flags(roles()),
                CmdDef::new("passwd", "change password for a user", "<user>"),
            ]),
            CmdDef::new("role", "role add, grant and revoke subcommands", "").subs(vec![
                CmdDef::new("add", "add a new role for the etcd cluster", "<role> "),
                CmdDef::new("get", "get details for a role", "<role>"),
                CmdDef::new("list", "list all roles", " "),
                CmdDef::new("remove", "remove a role from the etcd cluster", "<role>"),
                CmdDef::new("grant", "grant path matches to an etcd role", "<role>")
                    .flags(grant_flags("grant")),
                CmdDef::new("revoke", "revoke path matches for an etcd role", "<role>")
                    .flags(grant_flags("revoke")),
            ]),
            CmdDef::new("auth", "overall auth controls", "").subs(vec![
                CmdDef::new("enable", "enable auth access controls", " "),
                CmdDef::new("disable", "disable auth access controls", " "),
            ]),
        ],
    }
}

/// Runs etcdctl's v2 command line (`args` without the program name); returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    let argv0 = std::env::args_os()
        .next()
        .map(|a| rawarg::decode(&a))
        .unwrap_or_else(|| "etcdctl".to_string());
    let inv = match cli::parse(&app(), &argv0, &args) {
        Parsed::Run(inv) => *inv,
        Parsed::Exit(code) => return code,
    };
    // Answers are read and printed recursively, as deep as Go's JSON decoder allows (10,000
    // levels): the command runs on a thread whose stack has room for that.
    let worker = std::thread::Builder::new()
        .name("etcdctl-v2".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprint_line(&format!("Error:  {e}"));
                    return EXIT_SERVER_ERROR;
                }
            };
            let ctx = Ctx { inv };
            match rt.block_on(dispatch(&ctx)) {
                Ok(()) => EXIT_SUCCESS,
                Err(Exit(code)) => code,
            }
        });
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) | Err(_) => {
            eprint_line("Error:  etcdctl stopped unexpectedly");
            EXIT_SERVER_ERROR
        }
    }
}

/// The stack of the thread commands run on: reserved, and only touched as deep as an answer
/// nests.
pub const STACK_BYTES: usize = 256 << 20;

async fn dispatch(ctx: &Ctx) -> R {
    let path: Vec<&str> = ctx.inv.path.clone();
    match path.as_slice() {
        ["backup"] => backup::run(ctx),
        ["cluster-health"] => cluster_health::run(ctx).await,
        ["mk"] => keys::mk(ctx).await,
        ["mkdir"] => keys::mkdir(ctx, keys::PrevExist::No).await,
        ["setdir"] => keys::mkdir(ctx, keys::PrevExist::Ignore).await,
        ["updatedir"] => keys::mkdir(ctx, keys::PrevExist::Yes).await,
        ["rm"] => keys::rm(ctx).await,
        ["rmdir"] => keys::rmdir(ctx).await,
        ["get"] => keys::get(ctx).await,
        ["ls"] => keys::ls(ctx).await,
        ["set"] => keys::set(ctx).await,
        ["update"] => keys::update(ctx).await,
        ["watch"] => watch::watch(ctx).await,
        ["exec-watch"] => watch::exec_watch(ctx).await,
        ["member", sub] => member::run(ctx, sub).await,
        ["user", sub] => auth::user(ctx, sub).await,
        ["role", sub] => auth::role(ctx, sub).await,
        ["auth", sub] => auth::enable_disable(ctx, *sub == "enable").await,
        _ => Ok(()),
    }
}

/// Writes a line to stdout at once, as Go's unbuffered `fmt.Println` does.
pub fn out_line(s: &str) {
    out(&format!("{s}\n"));
}

pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// The same, for text made of command-line arguments (their bytes as given).
pub fn out_arg(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(&rawarg::bytes(s));
    let _ = o.flush();
}

pub fn eprint(s: &str) {
    let _ = std::io::stdout().flush();
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
}

pub fn eprint_line(s: &str) {
    eprint(&format!("{s}\n"));
}

/// For text made of command-line arguments.
pub fn eprint_arg(s: &str) {
    let _ = std::io::stdout().flush();
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(&rawarg::bytes(s));
}

/// The command being run.
pub struct Ctx {
    inv: Invocation,
}

impl Ctx {
    pub fn args(&self) -> &[String] {
        &self.inv.args
    }
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.inv.args.get(i).map(String::as_str)
    }
    pub fn bool(&self, name: &str) -> bool {
        self.inv.local.bool(name)
    }
    pub fn int(&self, name: &str) -> i64 {
        self.inv.local.int(name)
    }
    pub fn str(&self, name: &str) -> String {
        self.inv.local.str(name)
    }
    pub fn slice(&self, name: &str) -> Vec<String> {
        self.inv.local.slice(name)
    }
    pub fn output(&self) -> String {
        self.inv.global.str("output")
    }
    fn global_bool(&self, name: &str) -> bool {
        self.inv.global.bool(name)
    }
    fn global_str(&self, name: &str) -> String {
        self.inv.global.str(name)
    }
    /// `contextWithTotalTimeout`: the deadline of one step of a command.
    pub fn deadline(&self) -> Option<Instant> {
        Some(Instant::now() + self.inv.global.dur("total-timeout"))
    }
}

/// etcdctl's `handleError`: `Error:  <err>` (and a cluster error's detail), then `code`.
pub fn handle_error(code: i32, err: &ClientError) -> Exit {
    eprint_line(&format!("Error:  {err}"));
    if let Some(detail) = err.detail() {
        eprint_line(&detail);
    }
    Exit(code)
}

/// The same, for an error that is only a message.
pub fn handle_error_msg(code: i32, msg: &str) -> Exit {
    eprint_line(&format!("Error:  {msg}"));
    Exit(code)
}

fn env(name: &str) -> String {
    std::env::var_os(name)
        .map(|v| rawarg::decode(&v))
        .unwrap_or_default()
}

/// `--discovery-srv` (or `ETCDCTL_DISCOVERY_SRV`), whether insecure endpoints are taken,
/// and the service name (`ETCDCTL_DISCOVERY_SRV_NAME`).
fn discovery_domain(ctx: &Ctx) -> (String, bool, String) {
    let mut domain = ctx.global_str("discovery-srv");
    if domain.is_empty() {
        domain = env("ETCDCTL_DISCOVERY_SRV");
    }
    let insecure =
        ctx.global_bool("insecure-discovery") || !env("ETCDCTL_INSECURE_DISCOVERY").is_empty();
    (domain, insecure, env("ETCDCTL_DISCOVERY_SRV_NAME"))
}

/// etcd's `srv.GetClient("etcd-client", ...)`: https endpoints from
/// `_etcd-client-ssl._tcp.<domain>`, http ones from `_etcd-client._tcp.<domain>`; the targets
/// keep their final dot, as Go's resolver returns them.
fn discover(domain: &str, service_name: &str) -> Result<Vec<String>, String> {
    etcd_client::srv::blocking::get_client("etcd-client", domain, service_name)
}

/// etcdctl's `getEndpoints`.
fn endpoints(ctx: &Ctx) -> Result<Vec<String>, String> {
    let (domain, insecure, service) = discovery_domain(ctx);
    let mut eps = Vec::new();
    if !domain.is_empty() {
        for ep in discover(&domain, &service)? {
            if !insecure && ep.starts_with("http://") {
                eprint_line(&format!(
                    "ignoring discovered insecure endpoint {}",
                    crate::gofmt::quote(&ep)
                ));
                continue;
            }
            eps.push(ep);
        }
    }
    if eps.is_empty() {
        let mut peers = ctx.global_str("endpoints");
        for (kind, name) in [
            (true, "ETCDCTL_ENDPOINTS"),
            (false, "endpoint"),
            (true, "ETCDCTL_ENDPOINT"),
            (false, "peers"),
            (true, "ETCDCTL_PEERS"),
        ] {
            if peers.is_empty() {
                peers = if kind {
                    env(name)
                } else {
                    ctx.global_str(name)
                };
            }
        }
        if peers.is_empty() {
            peers = DEFAULT_ENDPOINTS.to_string();
        }
        eps = peers.split(',').map(str::to_string).collect();
    }
    eps.into_iter()
        .map(|ep| {
            let mut u = GoUrl::parse(&ep)?;
            if u.scheme.is_empty() {
                u.scheme = "http".to_string();
            }
            Ok(u.to_string())
        })
        .collect()
}

/// etcdctl's `getTransport`.
fn transport(ctx: &Ctx) -> Result<Transport, String> {
    let file = |flag: &str, var: &str| {
        let v = ctx.global_str(flag);
        let v = if v.is_empty() { env(var) } else { v };
        (!v.is_empty()).then(|| std::path::PathBuf::from(v))
    };
    let (domain, insecure, _) = discovery_domain(ctx);
    let info = TlsInfo {
        cert_file: file("cert-file", "ETCDCTL_CERT_FILE"),
        key_file: file("key-file", "ETCDCTL_KEY_FILE"),
        trusted_ca_file: file("ca-file", "ETCDCTL_CA_FILE"),
        server_name: (!insecure && !domain.is_empty()).then_some(domain),
        insecure_skip_verify: ctx.global_bool("insecure-skip-tls-verify")
            || !env("ETCDCTL_INSECURE_SKIP_TLS_VERIFY").is_empty(),
        ..TlsInfo::default()
    };
    let total = ctx.inv.global.dur("total-timeout");
    let dial = if !total.is_zero() && total < DEFAULT_DIAL_TIMEOUT {
        total
    } else {
        DEFAULT_DIAL_TIMEOUT
    };
    Transport::new(info, dial)
}

/// etcdctl's `getUsernamePassword`: `user:password`, or the user and a prompted password.
pub fn username_password(prompt: &str, flag: &str) -> Result<(String, String), String> {
    match flag.split_once(':') {
        Some((u, p)) => Ok((u.to_string(), p.to_string())),
        None => Ok((flag.to_string(), crate::prompt::speakeasy_ask(prompt)?)),
    }
}

/// etcdctl's `newClient`.
fn new_client(ctx: &Ctx) -> Result<Client, String> {
    let eps = endpoints(ctx)?;
    let tr = transport(ctx)?;
    let mut user = ctx.global_str("username");
    if user.is_empty() {
        user = env("ETCDCTL_USERNAME");
    }
    let mut password = ctx.global_str("password");
    if password.is_empty() {
        password = env("ETCDCTL_PASSWORD");
    }
    let credentials = if user.is_empty() {
        None
    } else if !password.is_empty() {
        Some((user, password))
    } else {
        Some(username_password("Password: ", &user)?)
    };
    Client::new(Config {
        transport: tr,
        endpoints: eps,
        header_timeout: ctx.inv.global.dur("timeout"),
        credentials,
    })
    .map_err(|e| e.to_string())
}

/// etcdctl's `mustNewClient`: a client whose endpoints were synced from the member list
/// (unless `--no-sync`).
pub async fn must_new_client(ctx: &Ctx) -> Result<Client, Exit> {
    let mut hc = new_client(ctx).map_err(|e| {
        eprint_line(&e);
        Exit(EXIT_BAD_ARGS)
    })?;
    let debug = ctx.global_bool("debug");
    hc.debug = debug;
    if !ctx.global_bool("no-sync") {
        if debug {
            eprint_line(&format!(
                "start to sync cluster using endpoints({})",
                hc.endpoints().join(",")
            ));
        }
        if let Err(e) = hc.sync(ctx.deadline()).await {
            if e == ClientError::NoEndpoints {
                eprint_line("etcd cluster has no published client endpoints.");
                eprint_line(&format!(
                    "Try '--no-sync' if you want to access non-published client endpoints({}).",
                    hc.endpoints().join(",")
                ));
                return Err(handle_error(EXIT_SERVER_ERROR, &e));
            }
            if e.is_connection_error() {
                return Err(handle_error(EXIT_BAD_CONNECTION, &e));
            }
        }
        if debug {
            eprint_line(&format!(
                "got endpoints({}) after sync",
                hc.endpoints().join(",")
            ));
        }
    }
    if debug {
        eprint_line(&format!("Cluster-Endpoints: {}", hc.endpoints().join(", ")));
    }
    Ok(hc)
}

/// etcdctl's `mustNewClientNoSync`.
pub fn must_new_client_no_sync(ctx: &Ctx) -> Result<Client, Exit> {
    let mut hc = new_client(ctx).map_err(|e| {
        eprint_line(&e);
        Exit(EXIT_BAD_ARGS)
    })?;
    if ctx.global_bool("debug") {
        eprint_line(&format!("Cluster-Endpoints: {}", hc.endpoints().join(", ")));
        hc.debug = true;
    }
    Ok(hc)
}

/// Waits for Ctrl-C and exits 0, as the long-running commands do.
pub fn exit_on_interrupt() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = std::io::stdout().flush();
            std::process::exit(EXIT_SUCCESS);
        }
    });
}
