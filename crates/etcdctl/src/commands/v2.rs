//! `ETCDCTL_API=2`: the few v2 commands (`set`, `get`, `mk`, `rm`) over etcd's v2 HTTP API,
//! enough to prepare v2 data for `migrate`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn usage() -> i32 {
    eprintln!("etcdctl (API 2): only set, get, mk and rm are supported");
    1
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn path_encode(s: &str) -> String {
    s.split('/').map(url_encode).collect::<Vec<_>>().join("/")
}

/// One HTTP/1.1 request; returns the body.
fn request(endpoint: &str, method: &str, path: &str, body: &str) -> Result<String, String> {
    request_typed(
        endpoint,
        method,
        path,
        body,
        "application/x-www-form-urlencoded",
    )
}

fn request_typed(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &str,
    ctype: &str,
) -> Result<String, String> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        return Ok(out);
    }
    Ok(body.to_string())
}

fn json_field(body: &str, key: &str) -> Option<String> {
    let i = body.find(&format!("\"{key}\":"))?;
    let rest = body[i + key.len() + 3..].trim_start();
    if let Some(r) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = r.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    c => out.push(c),
                },
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

pub fn run(args: Vec<String>) -> i32 {
    let mut endpoints = "http://127.0.0.1:2379".to_string();
    if let Ok(e) = std::env::var("ETCDCTL_ENDPOINT") {
        endpoints = e;
    }
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(v) = a
            .strip_prefix("--endpoints=")
            .or_else(|| a.strip_prefix("--endpoint="))
        {
            endpoints = v.to_string();
        } else if (a == "--endpoints" || a == "--endpoint" || a == "-C") && i < args.len() {
            endpoints = args[i].clone();
            i += 1;
        } else {
            rest.push(a.clone());
        }
    }
    let endpoint = endpoints.split(',').next().unwrap_or("").to_string();
    let words_all: Vec<&str> = rest.iter().map(String::as_str).collect();
    if let Some(code) = auth_command(&endpoint, &words_all) {
        return code;
    }
    let words: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with("--"))
        .collect();
    let (method, key, body) = match words.as_slice() {
        ["set", k, v] => ("PUT", *k, format!("value={}", url_encode(v))),
        ["mk", k, v] => (
            "PUT",
            *k,
            format!("value={}&prevExist=false", url_encode(v)),
        ),
        ["get", k] => ("GET", *k, String::new()),
        ["rm", k] => ("DELETE", *k, String::new()),
        _ => return usage(),
    };
    let key = if key.starts_with('/') {
        key.to_string()
    } else {
        format!("/{key}")
    };
    match request(
        &endpoint,
        method,
        &format!("/v2/keys{}", path_encode(&key)),
        &body,
    ) {
        Ok(b) => {
            if !b.trim_start().starts_with('{') {
                eprintln!(
                    "Error:  client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint"
                );
                return 4;
            }
            if let Some(code) = json_field(&b, "errorCode") {
                let message = json_field(&b, "message").unwrap_or_default();
                let cause = json_field(&b, "cause").unwrap_or_default();
                let index = json_field(&b, "index").unwrap_or_default();
                eprintln!("Error:  {code}: {message} ({cause}) [{index}]");
                return 4;
            }
            match method {
                "DELETE" => println!(
                    "PrevNode.Value: {}",
                    json_field(&b, "value").unwrap_or_default()
                ),
                _ => println!("{}", json_field(&b, "value").unwrap_or_default()),
            }
            0
        }
        Err(e) => {
            eprintln!(
                "Error:  client: etcd cluster is unavailable or misconfigured; error #0: {e}"
            );
            4
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// v2 `user add NAME[:PASS]`, `role add NAME`, `auth enable|disable`.
fn auth_command(endpoint: &str, words: &[&str]) -> Option<i32> {
    let (method, path, body, ok) = match words {
        ["user", "add", spec] => {
            let (user, pass) = match spec.split_once(':') {
                Some((u, p)) => (u.to_string(), p.to_string()),
                None => (
                    spec.to_string(),
                    crate::prompt::ask_password("New password: ").unwrap_or_default(),
                ),
            };
            (
                "PUT",
                format!("/v2/auth/users/{}", url_encode(&user)),
                format!(
                    "{{\"user\":{},\"password\":{}}}",
                    json_str(&user),
                    json_str(&pass)
                ),
                format!("User {user} created"),
            )
        }
        ["role", "add", role] => (
            "PUT",
            format!("/v2/auth/roles/{}", url_encode(role)),
            format!("{{\"role\":{}}}", json_str(role)),
            format!("Role {role} created"),
        ),
        ["auth", "enable"] => (
            "PUT",
            "/v2/auth/enable".to_string(),
            String::new(),
            "Authentication Enabled".to_string(),
        ),
        ["auth", "disable"] => (
            "DELETE",
            "/v2/auth/enable".to_string(),
            String::new(),
            "Authentication Disabled".to_string(),
        ),
        _ => return None,
    };
    match request_typed(endpoint, method, &path, &body, "application/json") {
        Ok(b) if b.contains("\"message\"") => {
            eprintln!("Error:  {}", json_field(&b, "message").unwrap_or_default());
            Some(1)
        }
        Ok(_) => {
            println!("{ok}");
            Some(0)
        }
        Err(e) => {
            eprintln!("Error:  {e}");
            Some(1)
        }
    }
}
