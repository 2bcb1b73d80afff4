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
    let (code, msg) = as_grpc_go(s);
    if msg.starts_with("etcdserver: ") || msg.starts_with("etcdserver:") {
        return msg;
    }
    match code {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            if msg.is_empty() || msg.contains("deadline") || msg.contains("Timeout expired") =>
        {
            "context deadline exceeded".to_string()
        }
        code => format!("rpc error: code = {} desc = {}", code_name(code), msg),
    }
}

/// A status as grpc-go would have given it, where tonic's differs: a request over the
/// client's send limit, and a connection that fails (grpc-go keeps retrying it until the
/// command's deadline, so etcdctl users see "context deadline exceeded").
pub fn as_grpc_go(s: &tonic::Status) -> (tonic::Code, String) {
    let msg = s.message();
    if s.code() == tonic::Code::OutOfRange
        && let Some(rest) = msg.strip_prefix("Error, encoded message length too large: found ")
        && let Some((found, rest)) = rest.split_once(" bytes, the limit is: ")
        && let Some(limit) = rest.strip_suffix(" bytes")
    {
        return (
            tonic::Code::ResourceExhausted,
            format!("trying to send message larger than max ({found} vs. {limit})"),
        );
    }
    // A status made here from a transport error carries that error as its source; one sent
    // by a server never does.
    let local_transport_failure = std::error::Error::source(s).is_some()
        && matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        );
    if local_transport_failure {
        return (
            tonic::Code::DeadlineExceeded,
            "context deadline exceeded".to_string(),
        );
    }
    (s.code(), msg.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_over_the_send_limit_reads_as_grpc_gos() {
        let tonic_status = tonic::Status::out_of_range(
            "Error, encoded message length too large: found 3000008 bytes, the limit is: \
             2097152 bytes",
        );
        assert_eq!(
            status_text(&tonic_status),
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max \
             (3000008 vs. 2097152)"
        );
    }

    #[test]
    fn a_local_transport_failure_reads_as_a_deadline() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let mut status = tonic::Status::unknown("transport error");
        status.set_source(std::sync::Arc::new(io));
        assert_eq!(status_text(&status), "context deadline exceeded");
    }

    #[test]
    fn a_servers_status_is_kept() {
        let status = tonic::Status::unavailable("etcdserver: leader changed");
        assert_eq!(status_text(&status), "etcdserver: leader changed");
        let status = tonic::Status::unavailable("no leader");
        assert_eq!(
            status_text(&status),
            "rpc error: code = Unavailable desc = no leader"
        );
    }
}
