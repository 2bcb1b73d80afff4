//! `backup`: a copy of a data dir (ours, or etcd 3.4's own) under new member and cluster IDs,
//! for `--force-new-cluster` (etcdutl's `backup` does the work). What it logs comes out as
//! etcd's etcdctl prints it: Go `log` lines through capnslog on stderr, zap's example logger's
//! JSON on stdout. Errors end the command as etcd's `log.Fatal` does: a log line, exit 1.

use std::io::Write;
use std::path::PathBuf;

use etcdutl::backup::Note;

use super::{Ctx, Exit, R};
use crate::global::log_time;

/// A Go `log` line as capnslog's default formatter prints it (Go's `log` package is
/// redirected to capnslog in etcd's etcdctl).
fn log_line(msg: &str) {
    eprintln!("{} I | {msg}", log_time());
}

/// A zap event as `zap.NewExample()` writes it: level, message, fields; no time, no caller.
fn zap_line(level: &str, msg: &str, fields: &[(&str, String)]) {
    let mut line = format!(
        "{{\"level\":\"{level}\",\"msg\":{}",
        crate::json::string(msg)
    );
    for (k, v) in fields {
        line.push_str(&format!(
            ",{}:{}",
            crate::json::string(k),
            crate::json::string(v)
        ));
    }
    line.push('}');
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn print(note: Note) {
    match note {
        Note::Log(msg) => log_line(&msg),
        Note::Info { msg, fields } => zap_line("info", msg, &fields),
        Note::Warn { msg, fields } => zap_line("warn", msg, &fields),
    }
}

pub fn run(ctx: &Ctx) -> R {
    let dir = |name: &str| {
        let v = ctx.str(name);
        (!v.is_empty()).then(|| PathBuf::from(v))
    };
    let opts = etcdutl::backup::BackupOptions {
        data_dir: dir("data-dir").unwrap_or_default(),
        wal_dir: dir("wal-dir"),
        backup_dir: dir("backup-dir").unwrap_or_default(),
        backup_wal_dir: dir("backup-wal-dir"),
        with_v3: ctx.bool("with-v3"),
    };
    match etcdutl::backup::backup_with(&opts, &mut print) {
        Ok(summary) => {
            if summary.blanked > 0 {
                log_line(&format!(
                    "ignoring {} v3 raft entries (use --with-v3 to keep the v3 data)",
                    summary.blanked
                ));
            }
            Ok(())
        }
        Err(e) => {
            log_line(&e.to_string());
            Err(Exit(1))
        }
    }
}
