//! Log lines in etcd 3.4's two formats, so what operators grep for and what log shippers parse
//! keeps working:
//!
//! - `--logger capnslog` (3.4's default): `2026-12-06 22:10:20.596360 I | etcdserver: msg`, and
//!   Raft's own lines as `raft2026/12/06 22:10:20 INFO: msg`;
//! - `--logger zap`: one JSON object a line, `{"level":"info","ts":"...","caller":"...",
//!   "msg":"...", fields...}`.
//!
//! Where etcd words a line differently in the two formats, the event's message is the zap text
//! and its `plain` field the capnslog text (`tracing::info!(plain = "published ...", "published
//! local member to cluster through raft")`); each format prints its own.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The field holding an event's capnslog wording, when it differs from its message.
const PLAIN_FIELD: &str = "plain";
/// `zap_only = true`: a line etcd writes only with `--logger zap` (capnslog has no such line).
const ZAP_ONLY_FIELD: &str = "zap_only";
/// A field holding a JSON object whose members become fields of their own (zap lines with
/// more fields than one tracing event can carry, such as "starting an etcd server").
const OBJECT_FIELD: &str = "zap_fields";

/// capnslog's plain text lines.
pub struct Capnslog;

/// zap's JSON lines.
pub struct Zap;

impl<S, N> FormatEvent<S, N> for Capnslog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let fields = Fields::of(event);
        if fields.zap_only {
            return Ok(());
        }
        let meta = event.metadata();
        let now = UtcTime::now();
        let mut line = String::new();
        if meta.target() == "raft" {
            // etcd's Raft logger: Go's log package with a "raft" prefix.
            let level = match *meta.level() {
                Level::ERROR => "ERROR",
                Level::WARN => "WARN",
                Level::INFO => "INFO",
                _ => "DEBUG",
            };
            let _ = write!(line, "raft{} {level}: ", now.slashed());
        } else {
            let level = match *meta.level() {
                Level::ERROR => 'E',
                Level::WARN => 'W',
                Level::INFO => 'I',
                Level::DEBUG => 'D',
                Level::TRACE => 'T',
            };
            let _ = write!(
                line,
                "{} {level} | {}: ",
                now.dashed(),
                package(meta.target())
            );
        }
        match &fields.plain {
            Some(plain) => line.push_str(plain),
            None => {
                line.push_str(&fields.message);
                line.push_str(&fields.plain_suffix());
            }
        }
        writeln!(writer, "{line}")
    }
}

impl<S, N> FormatEvent<S, N> for Zap
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let fields = Fields::of(event);
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        let mut line = format!(
            r#"{{"level":"{level}","ts":{},"caller":{},"msg":{}"#,
            json(&UtcTime::now().iso()),
            json(&caller(meta.target(), meta.line())),
            json(&fields.message)
        );
        for (key, value) in &fields.others {
            // zap's field names are dashed (`local-member-id`); Rust's cannot be.
            let _ = write!(line, ",{}:{}", json(&key.replace('_', "-")), value);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// etcd's package name for a log line, from the Rust module that logged it.
fn package(target: &str) -> &'static str {
    let module = |prefix: &str| target == prefix || target.starts_with(&format!("{prefix}::"));
    if module("etcd_server::peer") || module("etcd_server::raft::links") {
        "rafthttp"
    } else if module("etcd_server::serve") || module("etcd_server::tls") {
        "embed"
    } else if module("etcd_server::lease") {
        "lease"
    } else if module("etcd_server::watch") {
        "mvcc"
    } else if module("etcd_server") {
        "etcdserver"
    } else if module("etcd_mvcc") {
        "mvcc"
    } else if module("etcd_wal") {
        "wal"
    } else if module("etcd_transport") {
        "transport"
    } else if module("etcd::discovery::v2")
        || module("etcd::discovery::v3")
        || module("etcd::discovery::keys_client")
    {
        "discovery"
    } else if module("etcd::discovery::srv") {
        "embed"
    } else {
        "etcdmain"
    }
}

/// zap's `caller`: where the line comes from (module and line number).
fn caller(target: &str, line: Option<u32>) -> String {
    let file = target.replace("::", "/");
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file,
    }
}

/// An event's message, its capnslog wording if any, and its other fields in order, with
/// their JSON types (zap writes numbers, booleans and lists as such).
#[derive(Default)]
struct Fields {
    message: String,
    plain: Option<String>,
    zap_only: bool,
    others: Vec<(String, Value)>,
}

impl Fields {
    fn of(event: &Event<'_>) -> Fields {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields
    }

    fn record_value(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(text)) => self.message = text,
            (PLAIN_FIELD, Value::String(text)) => self.plain = Some(text),
            (ZAP_ONLY_FIELD, Value::Bool(b)) => self.zap_only = b,
            // Many fields at once, as a JSON object: each becomes a field of its own.
            (OBJECT_FIELD, Value::String(text)) => match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => self.others.extend(map),
                _ => self
                    .others
                    .push((OBJECT_FIELD.to_string(), Value::String(text))),
            },
            (name, value) => self.others.push((name.to_string(), value)),
        }
    }

    /// The fields as capnslog shows them: ` key=value` each.
    fn plain_suffix(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.others {
            match value {
                Value::String(s) => {
                    let _ = write!(out, " {key}={s}");
                }
                other => {
                    let _ = write!(out, " {key}={other}");
                }
            }
        }
        out
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_value(field, Value::String(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_value(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_value(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_value(field, Value::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // A list (`?vec_of_strings`) is written as a JSON list, as zap writes string slices.
        let value = match text.starts_with('[') {
            true => match serde_json::from_str::<Value>(&text) {
                Ok(list @ Value::Array(_)) => list,
                _ => Value::String(text),
            },
            false => Value::String(text),
        };
        self.record_value(field, value);
    }
}

/// A wall-clock instant in UTC, broken down for the log formats.
struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

impl UtcTime {
    fn now() -> UtcTime {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UtcTime::at(since_epoch.as_secs() as i64, since_epoch.subsec_micros())
    }

    fn at(unix_seconds: i64, micros: u32) -> UtcTime {
        let days = unix_seconds.div_euclid(86_400);
        let second_of_day = unix_seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: second_of_day / 3600,
            minute: second_of_day / 60 % 60,
            second: second_of_day % 60,
            micros,
        }
    }

    /// capnslog: `2026-12-06 22:10:20.596360`.
    fn dashed(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.micros
        )
    }

    /// Go's log package: `2026/12/06 22:10:20`.
    fn slashed(&self) -> String {
        format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// zap's ISO 8601 with milliseconds: `2026-12-06T22:10:20.596Z`.
    fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.micros / 1000
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29: a leap day of a century divisible by 400.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-12-06 22:10:20 UTC.
        let t = UtcTime::at(1_796_595_020, 596_360);
        assert_eq!(t.dashed(), "2026-12-06 22:10:20.596360");
        assert_eq!(t.slashed(), "2026/12/06 22:10:20");
        assert_eq!(t.iso(), "2026-12-06T22:10:20.596Z");
    }

    #[test]
    fn packages_follow_etcds() {
        assert_eq!(package("etcd_server::start"), "etcdserver");
        assert_eq!(package("etcd_server::raft::node"), "etcdserver");
        assert_eq!(package("etcd_server::raft::links"), "rafthttp");
        assert_eq!(package("etcd_server::peer"), "rafthttp");
        assert_eq!(package("etcd_server::serve"), "embed");
        assert_eq!(package("etcd"), "etcdmain");
        assert_eq!(package("etcd::discovery"), "etcdmain");
        assert_eq!(package("etcd::discovery::v2"), "discovery");
    }
}
