//! `backup`: a copy of one of our data dirs under new member and cluster IDs, for
//! `--force-new-cluster` (etcdutl's `backup` does the work). Errors end the command as
//! etcd's `log.Fatal` does: a timestamped line on stderr and exit 1.

use std::path::PathBuf;

use super::{Ctx, Exit, R};

fn go_log_line(msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    eprintln!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02} {msg}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Days since 1970-01-01 to a calendar date.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
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
    match etcdutl::backup::backup(&opts) {
        Ok(summary) => {
            if summary.blanked > 0 {
                go_log_line(&format!(
                    "ignoring {} v3 raft entries (use --with-v3 to keep the v3 data)",
                    summary.blanked
                ));
            }
            Ok(())
        }
        Err(e) => {
            go_log_line(&e.to_string());
            Err(Exit(1))
        }
    }
}
