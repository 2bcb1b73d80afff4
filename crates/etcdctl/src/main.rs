//! `etcdctl`: etcd 3.4's v3 command line client, as a drop-in. The command tree is declared
//! in `tree()`; each command's behaviour lives in `commands/`. With `ETCDCTL_API=2` the v2
//! etcdctl runs instead (`v2/`).

mod cli;
mod commands;
mod exit;
mod global;
mod gofmt;
mod json;
mod printer;
mod prompt;
mod rawarg;
mod srv;
mod table;
mod tabwriter;
mod v2;

use std::io::Write;
use std::time::Instant;

use cli::{CliError, Cmd, Flags, Invocation, Kind, flag, flag_short};
use global::{ClientCfg, Ctl};
use printer::Printer;

pub const VERSION: &str = "3.4.23";
pub const API_VERSION: &str = "3.4";

fn tree() -> Cmd {
    use Kind::*;
    let perm_flags = |verb: &'static str| -> Vec<cli::FlagDef> {
        if verb == "grant" {
            vec![
                flag("prefix", Bool, "false", "grant a prefix permission"),
                flag(
                    "from-key",
                    Bool,
                    "false",
                    "grant a permission of keys that are greater than or equal to the given key using byte compare",
                ),
            ]
        } else {
            vec![
                flag("prefix", Bool, "false", "revoke a prefix permission"),
                flag(
                    "from-key",
                    Bool,
                    "false",
                    "revoke a permission of keys that are greater than or equal to the given key using byte compare",
                ),
            ]
        }
    };
    let check_flags = |what: &'static str, prefix: &'static str| -> Vec<cli::FlagDef> {
        vec![
            flag(
                "load",
                Str,
                "s",
                if what == "perf" {
                    "The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"
                } else {
                    "The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"
                },
            ),
            flag(
                "prefix",
                Str,
                prefix,
                if what == "perf" {
                    "The prefix for writing the performance check's keys."
                } else {
                    "The prefix for writing the datascale check's keys."
                },
            ),
            flag(
                "auto-compact",
                Bool,
                "false",
                "Compact storage with last revision after test is finished.",
            ),
            flag(
                "auto-defrag",
                Bool,
                "false",
                "Defragment storage after test is finished.",
            ),
        ]
    };
    let mut root = Cmd::group(
        "etcdctl",
        "A simple command line client for etcd3.",
        vec![
            Cmd::new("get [options] <key> [range_end]", "Gets the key or a range of keys").flags(vec![
                flag("consistency", Str, "l", "Linearizable(l) or Serializable(s)"),
                flag("order", Str, "", "Order of results; ASCEND or DESCEND (ASCEND by default)"),
                flag("sort-by", Str, "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
                flag("limit", Int, "0", "Maximum number of results"),
                flag("prefix", Bool, "false", "Get keys with matching prefix"),
                flag(
                    "from-key",
                    Bool,
                    "false",
                    "Get keys that are greater than or equal to the given key using byte compare",
                ),
                flag("rev", Int, "0", "Specify the kv revision"),
                flag("keys-only", Bool, "false", "Get only the keys"),
                flag("print-value-only", Bool, "false", "Only write values when using the \"simple\" output format"),
            ]),
            Cmd::new(
                "put [options] <key> <value> (<value> can also be given from stdin)",
                "Puts the given key into the store",
            )
            .long(commands::kv::PUT_LONG)
            .flags(vec![
                flag("lease", Str, "0", "lease ID (in hexadecimal) to attach to the key"),
                flag("prev-kv", Bool, "false", "return the previous key-value pair before modification"),
                flag("ignore-value", Bool, "false", "updates the key using its current value"),
                flag("ignore-lease", Bool, "false", "updates the key using its current lease"),
            ]),
            Cmd::new(
                "del [options] <key> [range_end]",
                "Removes the specified key or range of keys [key, range_end)",
            )
            .flags(vec![
                flag("prefix", Bool, "false", "delete keys with matching prefix"),
                flag("prev-kv", Bool, "false", "return deleted key-value pairs"),
                flag(
                    "from-key",
                    Bool,
                    "false",
                    "delete keys that are greater than or equal to the given key using byte compare",
                ),
            ]),
            Cmd::new("txn [options]", "Txn processes all the requests in one transaction")
                .flags(vec![flag_short("interactive", 'i', Bool, "false", "Input transaction in interactive mode")]),
            Cmd::new("compaction [options] <revision>", "Compacts the event history in etcd").flags(vec![flag(
                "physical",
                Bool,
                "false",
                "'true' to wait for compaction to physically remove all old revisions",
            )]),
            Cmd::group(
                "alarm <subcommand>",
                "Alarm related commands",
                vec![
                    Cmd::new("disarm", "Disarms all alarms"),
                    Cmd::new("list", "Lists all alarms"),
                ],
            ),
            Cmd::new("defrag", "Defragments the storage of the etcd members with given endpoints")
                .flags(vec![flag(
                    "data-dir",
                    Str,
                    "",
                    "Optional. If present, defragments a data directory not in use by etcd.",
                )])
                .persistent(vec![flag("cluster", Bool, "false", "use all endpoints from the cluster member list")]),
            Cmd::group(
                "endpoint <subcommand>",
                "Endpoint related commands",
                vec![
                    Cmd::new("health", "Checks the healthiness of endpoints specified in `--endpoints` flag"),
                    Cmd::new("status", "Prints out the status of endpoints specified in `--endpoints` flag")
                        .long(commands::endpoint::STATUS_LONG),
                    Cmd::new("hashkv", "Prints the KV history hash for each endpoint in --endpoints").persistent(
                        vec![flag("rev", Int, "0", "maximum revision to hash (default: all revisions)")],
                    ),
                ],
            )
            .persistent(vec![flag("cluster", Bool, "false", "use all endpoints from the cluster member list")]),
            Cmd::new(
                "move-leader <transferee-member-id>",
                "Transfers leadership to another etcd cluster member.",
            ),
            Cmd::new(
                "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
                "Watches events stream on keys or prefixes",
            )
            .flags(commands::watch::flags()),
            Cmd::new("version", "Prints the version of etcdctl"),
            Cmd::group(
                "lease <subcommand>",
                "Lease related commands",
                vec![
                    Cmd::new("grant <ttl>", "Creates leases"),
                    Cmd::new("revoke <leaseID>", "Revokes leases"),
                    Cmd::new("timetolive <leaseID> [options]", "Get lease information").flags(vec![flag(
                        "keys",
                        Bool,
                        "false",
                        "Get keys attached to this lease",
                    )]),
                    Cmd::new("list", "List all active leases"),
                    Cmd::new("keep-alive [options] <leaseID>", "Keeps leases alive (renew)").flags(vec![flag(
                        "once",
                        Bool,
                        "false",
                        "Resets the keep-alive time to its original value and exits immediately",
                    )]),
                ],
            ),
            Cmd::group(
                "member <subcommand>",
                "Membership related commands",
                vec![
                    Cmd::new("add <memberName> [options]", "Adds a member into the cluster").flags(vec![
                        flag("peer-urls", Str, "", "comma separated peer URLs for the new member."),
                        flag("learner", Bool, "false", "indicates if the new member is raft learner"),
                    ]),
                    Cmd::new("remove <memberID>", "Removes a member from the cluster"),
                    Cmd::new("update <memberID> [options]", "Updates a member in the cluster").flags(vec![flag(
                        "peer-urls",
                        Str,
                        "",
                        "comma separated peer URLs for the updated member.",
                    )]),
                    Cmd::new("list", "Lists all members in the cluster").long(commands::member::LIST_LONG),
                    Cmd::new("promote <memberID>", "Promotes a non-voting member in the cluster")
                        .long("Promotes a non-voting learner member to a voting one in the cluster.\n"),
                ],
            ),
            Cmd::group(
                "snapshot <subcommand>",
                "Manages etcd node snapshots",
                vec![
                    Cmd::new("save <filename>", "Stores an etcd node backend snapshot to a given file"),
                    Cmd::new("restore <filename> [options]", "Restores an etcd member snapshot to an etcd directory")
                        .flags(commands::snapshot::restore_flags()),
                    Cmd::new("status <filename>", "Gets backend snapshot status of a given file")
                        .long(commands::snapshot::STATUS_LONG),
                ],
            ),
            Cmd::new("make-mirror [options] <destination>", "Makes a mirror at the destination etcd cluster")
                .flags(vec![
                    flag("prefix", Str, "", "Key-value prefix to mirror"),
                    flag(
                        "dest-prefix",
                        Str,
                        "",
                        "destination prefix to mirror a prefix to a different prefix in the destination cluster",
                    ),
                    flag("no-dest-prefix", Bool, "false", "mirror key-values to the root of the destination cluster"),
                    flag(
                        "dest-cert",
                        Str,
                        "",
                        "Identify secure client using this TLS certificate file for the destination cluster",
                    ),
                    flag("dest-key", Str, "", "Identify secure client using this TLS key file"),
                    flag("dest-cacert", Str, "", "Verify certificates of TLS enabled secure servers using this CA bundle"),
                    flag("dest-insecure-transport", Bool, "true", "Disable transport security for client connections"),
                ]),
            Cmd::new("migrate", "Migrates keys in a v2 store to a mvcc store").flags(vec![
                flag("no-ttl", Bool, "false", "Do not convert TTL keys"),
                flag("data-dir", Str, "", "Path to the data directory"),
                flag("wal-dir", Str, "", "Path to the WAL directory"),
                flag("transformer", Str, "", "Path to the user-provided transformer program"),
            ]),
            Cmd::new("lock <lockname> [exec-command arg1 arg2 ...]", "Acquires a named lock")
                .flags(vec![flag("ttl", Int, "10", "timeout for session")]),
            Cmd::new("elect <election-name> [proposal]", "Observes and participates in leader election")
                .flags(vec![flag_short("listen", 'l', Bool, "false", "observation mode")]),
            Cmd::group(
                "auth <enable or disable>",
                "Enable or disable authentication",
                vec![
                    Cmd::new("enable", "Enables authentication"),
                    Cmd::new("disable", "Disables authentication"),
                ],
            ),
            Cmd::group(
                "user <subcommand>",
                "User related commands",
                vec![
                    Cmd::new("add <user name or user:password> [options]", "Adds a new user").flags(vec![
                        flag(
                            "interactive",
                            Bool,
                            "true",
                            "Read password from stdin instead of interactive terminal",
                        ),
                        flag("new-user-password", Str, "", "Supply password from the command line flag"),
                        flag("no-password", Bool, "false", "Create a user without password (CN based auth only)"),
                    ]),
                    Cmd::new("delete <user name>", "Deletes a user"),
                    Cmd::new("get <user name> [options]", "Gets detailed information of a user").flags(vec![flag(
                        "detail",
                        Bool,
                        "false",
                        "Show permissions of roles granted to the user",
                    )]),
                    Cmd::new("list", "Lists all users"),
                    Cmd::new("passwd <user name> [options]", "Changes password of user").flags(vec![flag(
                        "interactive",
                        Bool,
                        "true",
                        "If true, read password from stdin instead of interactive terminal",
                    )]),
                    Cmd::new("grant-role <user name> <role name>", "Grants a role to a user"),
                    Cmd::new("revoke-role <user name> <role name>", "Revokes a role from a user"),
                ],
            ),
            Cmd::group(
                "role <subcommand>",
                "Role related commands",
                vec![
                    Cmd::new("add <role name>", "Adds a new role"),
                    Cmd::new("delete <role name>", "Deletes a role"),
                    Cmd::new("get <role name>", "Gets detailed information of a role"),
                    Cmd::new("list", "Lists all roles"),
                    Cmd::new(
                        "grant-permission [options] <role name> <permission type> <key> [endkey]",
                        "Grants a key to a role",
                    )
                    .flags(perm_flags("grant")),
                    Cmd::new("revoke-permission <role name> <key> [endkey]", "Revokes a key from a role")
                        .flags(perm_flags("revoke")),
                ],
            ),
            Cmd::group(
                "check <subcommand>",
                "commands for checking properties of the etcd cluster",
                vec![
                    Cmd::new("perf [options]", "Check the performance of the etcd cluster")
                        .flags(check_flags("perf", "/etcdctl-check-perf/")),
                    Cmd::new(
                        "datascale [options]",
                        "Check the memory usage of holding data for different workloads on a given server endpoint.",
                    )
                    .long("If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.")
                    .flags(check_flags("datascale", "/etcdctl-check-datascale/")),
                ],
            ),
        ],
    );
    root.subs.push(commands::completion::tree());
    root.use_line = "etcdctl";
    root.persistent = vec![
        flag("endpoints", Slice, "127.0.0.1:2379", "gRPC endpoints"),
        flag("debug", Bool, "false", "enable client-side debug logging"),
        flag_short(
            "write-out",
            'w',
            Str,
            "simple",
            "set the output format (fields, json, protobuf, simple, table)",
        ),
        flag(
            "hex",
            Bool,
            "false",
            "print byte strings as hex encoded strings",
        ),
        flag(
            "dial-timeout",
            Dur,
            "2s",
            "dial timeout for client connections",
        ),
        flag(
            "command-timeout",
            Dur,
            "5s",
            "timeout for short running command (excluding dial timeout)",
        ),
        flag(
            "keepalive-time",
            Dur,
            "2s",
            "keepalive time for client connections",
        ),
        flag(
            "keepalive-timeout",
            Dur,
            "6s",
            "keepalive timeout for client connections",
        ),
        flag(
            "insecure-transport",
            Bool,
            "true",
            "disable transport security for client connections",
        ),
        flag(
            "insecure-discovery",
            Bool,
            "true",
            "accept insecure SRV records describing cluster endpoints",
        ),
        flag(
            "insecure-skip-tls-verify",
            Bool,
            "false",
            "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)",
        ),
        flag(
            "cert",
            Str,
            "",
            "identify secure client using this TLS certificate file",
        ),
        flag(
            "key",
            Str,
            "",
            "identify secure client using this TLS key file",
        ),
        flag(
            "cacert",
            Str,
            "",
            "verify certificates of TLS-enabled secure servers using this CA bundle",
        ),
        flag(
            "user",
            Str,
            "",
            "username[:password] for authentication (prompt if password is not supplied)",
        ),
        flag(
            "password",
            Str,
            "",
            "password for authentication (if this option is used, --user option shouldn't include password)",
        ),
        flag_short(
            "discovery-srv",
            'd',
            Str,
            "",
            "domain name to query for SRV records describing cluster endpoints",
        ),
        flag(
            "discovery-srv-name",
            Str,
            "",
            "service name to query when using DNS discovery",
        ),
    ];
    root
}

/// What a command needs: its flags, arguments and the process's raw arguments.
pub struct Cx {
    pub names: Vec<&'static str>,
    pub flags: Flags,
    pub args: Vec<String>,
    pub os_args: Vec<String>,
    pub printer: Printer,
}

impl Cx {
    pub fn cfg(&self) -> ClientCfg {
        ClientCfg::from_flags(&self.flags)
    }
    pub fn deadline(&self) -> Option<Instant> {
        global::command_deadline(&self.flags)
    }
    /// etcdctl's `mustClientFromCmd` + `commandCtx`: a client whose calls end at
    /// `--command-timeout` from now.
    pub async fn client(&self) -> Ctl {
        self.cfg().must_connect(self.deadline()).await
    }
    /// A client for long-running commands (no deadline).
    pub async fn client_forever(&self) -> Ctl {
        self.cfg().must_connect(None).await
    }
}

fn main() {
    let api = std::env::var("ETCDCTL_API").unwrap_or_default();
    // SAFETY: single-threaded at this point; etcdctl unsets it before reading ETCDCTL_*.
    unsafe { std::env::remove_var("ETCDCTL_API") };
    if !(api.is_empty() || api == "3") {
        if api == "2" {
            let code = v2::run(
                std::env::args_os()
                    .skip(1)
                    .map(|a| rawarg::decode(&a))
                    .collect(),
            );
            exit::exit(code);
        }
        eprintln!("unsupported API version {api}");
        exit::exit(1);
    }
    let os_args: Vec<String> = std::env::args_os().map(|a| rawarg::decode(&a)).collect();
    let root = tree();
    let inv = match cli::parse(&root, &os_args[1..]) {
        Ok(inv) => inv,
        Err((path, CliError::UnknownCommand(msg))) => {
            let _ = path;
            eprintln!("Error: {msg}");
            eprintln!("Run 'etcdctl --help' for usage.");
            exit::fail(exit::EXIT_ERROR, &msg);
        }
        Err((path, CliError::Flag(msg))) => {
            eprintln!("Error: {msg}");
            print!("{}", cli::usage(&path));
            let _ = std::io::stdout().flush();
            eprintln!();
            exit::fail(exit::EXIT_ERROR, &msg);
        }
    };
    if inv.help || !inv.cmd().runnable {
        print!("{}", cli::usage(&inv.path));
        exit::exit(0);
    }
    run(inv, os_args);
}

fn run(inv: Invocation<'_>, os_args: Vec<String>) {
    let names = inv.names();
    let mut flags = inv.flags.clone();
    let extra: &[&str] = if names.first() == Some(&"watch") {
        &["watch-key", "watch-range-end"]
    } else {
        &[]
    };
    // Commands that open no client never read ETCDCTL_* (clientConfigFromCmd does).
    let offline = matches!(
        names.as_slice(),
        ["version"] | ["migrate"] | ["snapshot", "status"] | ["snapshot", "restore"]
    );
    if !offline {
        global::apply_env(&mut flags, extra);
    }
    if flags.bool("debug") && !offline {
        global::print_debug(&flags);
    }
    let printer = global::printer_from(&flags);
    let cx = Cx {
        names: names.clone(),
        flags,
        args: inv.args.clone(),
        os_args,
        printer,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => exit::fail(exit::EXIT_ERROR, &e.to_string()),
    };
    let code = rt.block_on(commands::dispatch(cx));
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
