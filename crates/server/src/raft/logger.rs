//! raft-rs logs through `slog`; this drain forwards its records to `tracing`, so the server has
//! one log stream in one format.

use std::fmt::Write as _;

use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};

struct TracingDrain;

/// Collects a record's key-value pairs.
#[derive(Default)]
struct KvPairs(Vec<(String, String)>);

impl Serializer for KvPairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        self.0.push((key.to_string(), val.to_string()));
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    /// etcd's Raft lines start with the member's ID (`1e53... became leader at term 2`);
    /// raft-rs carries it as the logger's `raft_id` value. Values the message already shows
    /// (raft-rs passes its format arguments as values too) are not repeated.
    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvPairs::default();
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let text = record.msg().to_string();
        let mut id = String::new();
        let mut msg = String::new();
        for (key, value) in kv.0 {
            if key == "raft_id" {
                id = value;
            } else if !text.contains(&value) {
                let _ = write!(msg, " {key}={value}");
            }
        }
        let msg = if id.is_empty() {
            format!("{text}{msg}")
        } else {
            format!("{id} {text}{msg}")
        };
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            Level::Info => tracing::info!(target: "raft", "{msg}"),
            Level::Debug => tracing::debug!(target: "raft", "{msg}"),
            Level::Trace => tracing::trace!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

pub fn raft_logger(member_id: u64) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("raft_id" => format!("{member_id:x}")),
    )
}
