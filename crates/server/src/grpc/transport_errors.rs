//! gRPC transport errors in grpc-go's words. Clients and scripts match on what etcd's Go
//! server says when the transport itself refuses a request; tonic refuses the same requests
//! with other codes and texts, so its answers are rewritten here, on the way out.
//!
//! Only the trailers-only answers tonic gives before a handler runs are rewritten (a unary
//! request over the limit); that is where these errors occur.

use axum::http::{HeaderValue, Response};

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";

/// tonic's code and text for a request message over the receive limit.
const TONIC_TOO_LARGE_CODE: &str = "11"; // OUT_OF_RANGE
const TONIC_TOO_LARGE_PREFIX: &str = "Error, decoded message length too large: found ";
/// grpc-go's code for the same: RESOURCE_EXHAUSTED.
const GRPC_GO_TOO_LARGE_CODE: &str = "8";

/// Rewrites a response's gRPC status to grpc-go's where tonic's differs.
pub fn as_grpc_go<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers();
    if headers.get(GRPC_STATUS).map(HeaderValue::as_bytes) != Some(TONIC_TOO_LARGE_CODE.as_bytes())
    {
        return response;
    }
    let Some(rewritten) = headers
        .get(GRPC_MESSAGE)
        .and_then(|m| percent_decode(m.as_bytes()))
        .as_deref()
        .and_then(too_large_message)
    else {
        return response;
    };
    let Ok(message) = HeaderValue::from_str(&rewritten) else {
        return response;
    };
    let headers = response.headers_mut();
    headers.insert(
        GRPC_STATUS,
        HeaderValue::from_static(GRPC_GO_TOO_LARGE_CODE),
    );
    headers.insert(GRPC_MESSAGE, message);
    response
}

/// A `grpc-message` header's text: the gRPC spec percent-encodes it (tonic encodes spaces).
fn percent_decode(encoded: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = std::str::from_utf8(encoded.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(encoded[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// tonic's "found N bytes, the limit is: M bytes" as grpc-go's "(N vs. M)".
fn too_large_message(tonic_message: &str) -> Option<String> {
    let rest = tonic_message.strip_prefix(TONIC_TOO_LARGE_PREFIX)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (found, limit): (u64, u64) = (found.parse().ok()?, limit.parse().ok()?);
    Some(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer tonic itself gives for this status, as it would leave our server.
    fn tonic_answer(status: tonic::Status) -> Response<()> {
        status.into_http()
    }

    #[test]
    fn a_message_over_the_limit_is_resource_exhausted_in_grpc_gos_words() {
        let response = as_grpc_go(tonic_answer(tonic::Status::out_of_range(
            "Error, decoded message length too large: found 3000008 bytes, the limit is: \
             2097152 bytes",
        )));
        assert_eq!(response.headers()[GRPC_STATUS], "8");
        assert_eq!(
            response.headers()[GRPC_MESSAGE],
            "grpc: received message larger than max (3000008 vs. 2097152)"
        );
    }

    #[test]
    fn other_statuses_pass_unchanged() {
        for status in [
            tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision"),
            tonic::Status::invalid_argument(
                "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes",
            ),
            tonic::Status::out_of_range(
                "Error, decoded message length too large: found x bytes, the limit is: 0 bytes",
            ),
        ] {
            let expected = tonic_answer(status.clone());
            let response = as_grpc_go(tonic_answer(status));
            assert_eq!(response.headers(), expected.headers());
        }
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode(b"a%20b%25").as_deref(), Some("a b%"));
        assert_eq!(percent_decode(b"bad%2"), None);
        assert_eq!(percent_decode(b"bad%zz"), None);
    }
}
