//! Setting a member's failpoints over its `GOFAIL_HTTP` endpoint (gofail's protocol, which
//! our failpoint builds serve): `PUT /<name>` with the term, `DELETE /<name>`. One plain
//! HTTP/1.1 request per call, so no HTTP client library is needed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Sets `name` to `term` on the member whose endpoint is `addr` (`host:port`).
pub async fn set(addr: &str, name: &str, term: &str) -> Result<(), String> {
    request(addr, "PUT", name, term).await
}

/// Turns `name` off (a thread paused at it goes on).
pub async fn clear(addr: &str, name: &str) -> Result<(), String> {
    request(addr, "DELETE", name, "").await
}

async fn request(addr: &str, method: &str, name: &str, body: &str) -> Result<(), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let response = String::from_utf8_lossy(&response);
        let status = response.split(' ').nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(response
                .lines()
                .last()
                .unwrap_or("no answer")
                .trim()
                .to_string())
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r)
        .map_err(|e| format!("failpoint {name} on {addr}: {e}"))
}
