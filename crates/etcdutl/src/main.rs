//! `etcdutl`: offline snapshot status and restore, and defrag of a data dir.

use std::path::{Path, PathBuf};

use etcdutl::snapshot::{self, RestoreConfig};

const USAGE: &str = "NAME:
\tetcdutl - An administrative command line tool for etcd3.

USAGE:
\tetcdutl [flags]

COMMANDS:
\tconvert\t\t\tConverts an etcd 3.4/3.5 data dir into this etcd's formats, offline
\tdefrag\t\t\tDefragments the storage of the etcd
\tsnapshot restore\tRestores an etcd member snapshot to an etcd directory
\tsnapshot status\t\tGets backend snapshot status of a given file
\tversion\t\t\tPrints the version of etcdutl

OPTIONS:
  -h, --help[=false]\t\t\thelp for etcdutl
  -w, --write-out=\"simple\"\t\tset the output format (fields, json, protobuf, simple, table)
";

/// `etcdutl convert --data-dir DIR [--wal-dir DIR]`: what the server does by itself when it
/// starts on an etcd data dir, for operators who want it done offline first.
#[cfg(feature = "convert")]
fn convert(a: &Args) {
    let Some(dir) = a.get("data-dir").filter(|d| !d.is_empty()) else {
        fail(1, "Please provide data directory.")
    };
    let wal_dir = a
        .get("wal-dir")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let paths = etcd_server::etcd_data::DataDirPaths::new(Path::new(&dir), wal_dir.as_deref());
    match etcd_server::etcd_data::prepare(&paths) {
        Ok(Some(c)) => println!(
            "Converted etcd data[{dir}]: member {:x}, cluster {:x}, revision {}, hash {}, \
             {} key records, {} leases, {} members, {} log entries after index {}",
            c.member_id,
            c.cluster_id,
            c.revision,
            c.hash_kv,
            c.records,
            c.leases,
            c.members,
            c.entries,
            c.snapshot_index
        ),
        Ok(None) => println!("Nothing to convert: etcd data[{dir}] is not etcd 3.4/3.5's"),
        Err(e) => fail(1, &format!("cannot convert etcd data[{dir}]: {e}")),
    }
}

#[cfg(not(feature = "convert"))]
fn convert(_: &Args) {
    fail(1, "this etcdutl was built without the convert feature")
}

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(code)
}

struct Args {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
}

impl Args {
    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            v == "true" || v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True"
        })
    }
}

const BOOL_FLAGS: &[&str] = &[
    "skip-hash-check",
    "help",
    "h",
    "mark-compacted",
    "bump-revision",
];

fn parse(args: &[String]) -> Args {
    let mut out = Args {
        positional: Vec::new(),
        flags: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.positional.extend(args[i..].iter().cloned());
            break;
        }
        let body = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-').filter(|b| !b.is_empty()));
        let Some(body) = body else {
            out.positional.push(a.clone());
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let name = if name == "w" {
            "write-out".to_string()
        } else {
            name
        };
        let value = match value {
            Some(v) => v,
            None if BOOL_FLAGS.contains(&name.as_str()) => "true".to_string(),
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => fail(1, &format!("flag needs an argument: --{name}")),
        };
        out.flags.push((name, value));
    }
    out
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let a = parse(&raw);
    if a.bool("help") || a.bool("h") || a.positional.is_empty() {
        print!("{USAGE}");
        return;
    }
    let format = a.get("write-out").unwrap_or_else(|| "simple".to_string());
    let pos: Vec<&str> = a.positional.iter().map(String::as_str).collect();
    match pos.as_slice() {
        ["version"] => {
            println!("etcdutl version: 3.4.23");
            println!("API version: 3.4");
        }
        ["defrag"] => {
            let Some(dir) = a.get("data-dir") else {
                fail(1, "Please provide data directory.")
            };
            let db = Path::new(&dir).join("member").join("snap").join("db");
            if let Err(e) = etcdutl::defrag::defrag_file(&db) {
                eprintln!("Failed to defragment etcd data[{dir}] ({e})");
                std::process::exit(1);
            }
            println!("Finished defragmenting etcd data[{dir}]");
        }
        ["convert"] => convert(&a),
        ["snapshot", "status", file] => {
            let st = snapshot::status(Path::new(file)).unwrap_or_else(|e| fail(1, &e.to_string()));
            let size = humanize(st.total_size.max(0) as u64);
            match format.as_str() {
                "simple" => println!("{:x}, {}, {}, {}", st.hash, st.revision, st.total_key, size),
                "json" => println!(
                    "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
                    st.hash, st.revision, st.total_key, st.total_size
                ),
                "fields" => println!(
                    "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}",
                    st.hash, st.revision, st.total_key, st.total_size
                ),
                "table" => print!(
                    "{}",
                    table(&[
                        format!("{:x}", st.hash),
                        st.revision.to_string(),
                        st.total_key.to_string(),
                        size
                    ])
                ),
                "protobuf" => fail(4, "protobuf not supported as output format"),
                _ => fail(4, "unsupported output format"),
            }
        }
        ["snapshot", "status", ..] => fail(128, "snapshot status requires exactly one argument"),
        ["snapshot", "restore", file] => {
            let name = a.get("name").unwrap_or_else(|| "default".to_string());
            let data_dir = a
                .get("data-dir")
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("{name}.etcd"));
            let wal_dir = a
                .get("wal-dir")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(&data_dir).join("member").join("wal"));
            let cfg = RestoreConfig {
                snapshot_path: PathBuf::from(file),
                output_data_dir: PathBuf::from(&data_dir),
                output_wal_dir: wal_dir,
                peer_urls: a
                    .get("initial-advertise-peer-urls")
                    .unwrap_or_else(|| "http://localhost:2380".to_string())
                    .split(',')
                    .map(String::from)
                    .collect(),
                initial_cluster: a
                    .get("initial-cluster")
                    .unwrap_or_else(|| format!("{name}=http://localhost:2380")),
                initial_cluster_token: a
                    .get("initial-cluster-token")
                    .unwrap_or_else(|| "etcd-cluster".to_string()),
                skip_hash_check: a.bool("skip-hash-check"),
                name,
            };
            if let Err(e) = snapshot::restore(&cfg) {
                fail(1, &e.to_string());
            }
        }
        ["snapshot", "restore", ..] => fail(128, "snapshot restore requires exactly one argument"),
        [other, ..] => {
            eprintln!("Error: unknown command \"{other}\" for \"etcdutl\"");
            eprintln!("Run 'etcdutl --help' for usage.");
            std::process::exit(1);
        }
        [] => print!("{USAGE}"),
    }
}

fn humanize(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = (((s as f64).ln() / 1000f64.ln()).floor() as usize).min(6);
    let val = ((s as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SIZES[e])
    } else {
        format!("{val:.0} {}", SIZES[e])
    }
}

fn table(row: &[String]) -> String {
    let hdr = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let widths: Vec<usize> = hdr
        .iter()
        .zip(row)
        .map(|(h, c)| h.len().max(c.chars().count()))
        .collect();
    let sep: String = format!(
        "+{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2) + "+")
            .collect::<String>()
    );
    let mut out = sep.clone();
    out.push('|');
    for (h, w) in hdr.iter().zip(&widths) {
        let gap = w - h.len();
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(gap / 2),
            h,
            " ".repeat(gap - gap / 2)
        ));
    }
    out.push('\n');
    out.push_str(&sep);
    out.push('|');
    for (c, w) in row.iter().zip(&widths) {
        out.push_str(&format!(" {c:>w$} |"));
    }
    out.push('\n');
    out.push_str(&sep);
    out
}
