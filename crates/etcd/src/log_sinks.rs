//! Where log lines go (`--log-outputs`): stderr, stdout, files, and systemd's journal, each
//! line to every output, as etcd's zap does. `default` is stderr, except for capnslog under
//! systemd (started by PID 1 with a journal to talk to), where etcd 3.4 writes to the journal.
//!
//! The journal gets etcd's fields over journald's native protocol: `MESSAGE` (zap: the whole
//! JSON line; capnslog: the message alone), `PRIORITY` from the level, `PACKAGE`, and
//! `SYSLOG_IDENTIFIER` (the program's name).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogLevel, Logger};

/// journald's socket for structured messages.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<File>),
    Journal { socket: UnixDatagram, zap: bool },
}

/// Every output of the process, shared by all log events.
#[derive(Clone)]
pub struct Sinks(Arc<Vec<Sink>>);

/// Connects to the journal, worded as etcd words the failure.
fn dial_journal() -> Result<UnixDatagram, String> {
    let socket = UnixDatagram::unbound().map_err(|e| format!("can't find journal ({e})"))?;
    socket.connect(JOURNAL_SOCKET).map_err(|e| {
        format!(
            "can't find journal (dial unixgram {JOURNAL_SOCKET}: connect: {})",
            go_errno(&e)
        )
    })?;
    Ok(socket)
}

/// An OS error as Go words it: glibc's text, lower-cased, without Rust's "(os error N)".
fn go_errno(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// capnslog's rule for its default output: the journal when started by systemd.
fn under_systemd() -> bool {
    std::os::unix::process::parent_id() == 1 && std::path::Path::new(JOURNAL_SOCKET).exists()
}

impl Sinks {
    /// The outputs `--log-outputs` names; errors in etcd's words ("error verifying flags, ...").
    pub fn open(cfg: &Config) -> Result<Sinks, String> {
        let zap = cfg.logger == Logger::Zap;
        let mut sinks = Vec::new();
        for output in &cfg.log_outputs {
            let sink = match output.as_str() {
                "default" if !zap && under_systemd() => Sink::Journal {
                    socket: dial_journal()?,
                    zap,
                },
                "default" | "stderr" => Sink::Stderr,
                "stdout" => Sink::Stdout,
                "systemd/journal" => Sink::Journal {
                    socket: dial_journal()?,
                    zap,
                },
                path => {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| {
                            format!("open sink {path:?}: open {path}: {}", go_errno(&e))
                        })?;
                    Sink::File(Mutex::new(file))
                }
            };
            sinks.push(sink);
        }
        if sinks.is_empty() {
            sinks.push(Sink::Stderr);
        }
        Ok(Sinks(Arc::new(sinks)))
    }
}

/// One event's formatted line, written to every sink when the formatter is done with it.
pub struct LineWriter {
    sinks: Sinks,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        for sink in self.sinks.0.iter() {
            // A log line that cannot be written has nowhere to be reported; the others still go.
            let _ = match sink {
                Sink::Stderr => io::stderr().write_all(&self.line),
                Sink::Stdout => io::stdout().write_all(&self.line),
                Sink::File(file) => file
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write_all(&self.line),
                Sink::Journal { socket, zap } => {
                    let text = String::from_utf8_lossy(&self.line);
                    let entry = if *zap {
                        journal_entry_of_zap(text.trim_end())
                    } else {
                        journal_entry_of_capnslog(text.trim_end())
                    };
                    // Falls back to stderr, as etcd's journal writer does.
                    socket
                        .send(&entry)
                        .map(|_| ())
                        .or_else(|_| io::stderr().write_all(&self.line))
                }
            };
        }
    }
}

impl<'a> MakeWriter<'a> for Sinks {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sinks: self.clone(),
            line: Vec::new(),
        }
    }
}

/// syslog priorities, as etcd maps its levels to them.
fn priority(level: &str) -> u8 {
    match level {
        "debug" | "D" | "DEBUG" => 7,
        "info" | "I" | "N" | "INFO" => 6,
        "warn" | "W" | "WARN" => 4,
        "error" | "E" | "ERROR" => 3,
        _ => 2,
    }
}

/// One journal entry in journald's native protocol: `KEY=value` lines, or, for a value with a
/// newline, the key, a newline, the value's length as 64-bit little endian, and the value.
fn journal_entry(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        if value.contains('\n') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.extend_from_slice(format!("{key}={value}").as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn identifier() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "etcd".to_string())
}

/// etcd's zap journal writer: the JSON line is the message; level and caller give the rest.
fn journal_entry_of_zap(line: &str) -> Vec<u8> {
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let level = parsed["level"].as_str().unwrap_or("info");
    let caller = parsed["caller"].as_str().unwrap_or_default();
    let package = caller.rsplit_once('/').map_or(".", |(dir, _)| dir);
    let priority = priority(level).to_string();
    journal_entry(&[
        ("MESSAGE", line),
        ("PRIORITY", &priority),
        ("PACKAGE", package),
        ("SYSLOG_IDENTIFIER", &identifier()),
    ])
}

/// capnslog's journald formatter: the message without the date, level and package, which
/// become fields.
fn journal_entry_of_capnslog(line: &str) -> Vec<u8> {
    // `2026-12-06 22:10:20.596360 I | etcdserver: msg`
    let (level, package, message) = match line.split_once(" | ") {
        Some((head, rest)) => {
            let level = head.rsplit(' ').next().unwrap_or("I");
            let (package, message) = rest.split_once(": ").unwrap_or(("etcdmain", rest));
            (level, package, message)
        }
        // Raft's lines: `raft2026/12/06 22:10:20 INFO: msg`.
        None => {
            let after_time = line.splitn(3, ' ').nth(2).unwrap_or(line);
            let (level, message) = after_time.split_once(": ").unwrap_or(("INFO", after_time));
            (level, "raft", message)
        }
    };
    let priority = priority(level).to_string();
    journal_entry(&[
        ("MESSAGE", message),
        ("PRIORITY", &priority),
        ("PACKAGE", package),
        ("SYSLOG_IDENTIFIER", &identifier()),
    ])
}

/// Sets up the process's logging from the flags: the format (zap or capnslog), the level, the
/// outputs.
pub fn init(cfg: &Config) -> Result<(), String> {
    use tracing_subscriber::filter::LevelFilter;
    let level = match cfg.effective_log_level() {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        _ => LevelFilter::ERROR,
    };
    let sinks = Sinks::open(cfg)?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(sinks);
    let result = match cfg.logger {
        Logger::Zap => builder.event_format(crate::logging::Zap).try_init(),
        Logger::Capnslog => builder.event_format(crate::logging::Capnslog).try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(entry: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(entry)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn zap_lines_become_journal_entries_as_etcds() {
        let line = r#"{"level":"warn","ts":"t","caller":"etcdserver/server.go:10","msg":"m"}"#;
        let entry = fields(&journal_entry_of_zap(line));
        assert_eq!(entry[0], format!("MESSAGE={line}"));
        assert_eq!(entry[1], "PRIORITY=4");
        assert_eq!(entry[2], "PACKAGE=etcdserver");
        assert!(entry[3].starts_with("SYSLOG_IDENTIFIER="));
    }

    #[test]
    fn capnslog_lines_lose_their_prefix() {
        let entry = fields(&journal_entry_of_capnslog(
            "2026-12-06 22:10:20.596360 E | etcdserver: it broke",
        ));
        assert_eq!(
            &entry[..3],
            ["MESSAGE=it broke", "PRIORITY=3", "PACKAGE=etcdserver"]
        );
        let raft = fields(&journal_entry_of_capnslog(
            "raft2026/12/06 22:10:20 INFO: elected",
        ));
        assert_eq!(
            &raft[..3],
            ["MESSAGE=elected", "PRIORITY=6", "PACKAGE=raft"]
        );
    }

    #[test]
    fn multi_line_values_are_length_prefixed() {
        let entry = journal_entry(&[("MESSAGE", "a\nb")]);
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(entry, want);
    }
}
