//! etcdctl's exit codes and its one way of failing: `Error: <text>` on stderr.

use std::io::Write;

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
pub const EXIT_BAD_ARGS: i32 = 128;

/// Prints `Error: msg` to stderr and exits with `code`, flushing stdout first.
pub fn fail(code: i32, msg: &str) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("Error: {msg}");
    std::process::exit(code)
}

pub fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// The text Go's clientv3 gives an RPC error: etcd's own errors by their description, others
/// as grpc-go formats a status.
pub fn status_text(s: &tonic::Status) -> String {
    let msg = s.message();
    if msg.starts_with("etcdserver: ") || msg.starts_with("etcdserver:") {
        return msg.to_string();
    }
    match s.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            if msg.is_empty() || msg.contains("deadline") || msg.contains("Timeout expired") =>
        {
            "context deadline exceeded".to_string()
        }
        code => format!("rpc error: code = {} desc = {}", code_name(code), msg),
    }
}

pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
