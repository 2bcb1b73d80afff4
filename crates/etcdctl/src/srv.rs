//! `--discovery-srv`: endpoints from DNS SRV records (`_etcd-client-ssl._tcp.<domain>` and
//! `_etcd-client._tcp.<domain>`), asked of the first nameserver in /etc/resolv.conf.

use std::net::UdpSocket;
use std::time::Duration;

fn nameserver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .map(|a| a.trim().to_string())
                .next()
        })
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        if len == 0 {
            end.get_or_insert(pos + 1);
            return Some((labels.join("."), end?));
        }
        labels.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).into_owned());
        pos += 1 + len;
    }
    None
}

/// (target, port) of each SRV record of `name`.
pub(crate) fn lookup_srv(name: &str) -> Result<Vec<(String, u16)>, String> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    encode_name(name, &mut q);
    q.extend_from_slice(&[0, 33, 0, 1]);
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let ns = nameserver();
    let addr = if ns.contains(':') {
        format!("[{ns}]:53")
    } else {
        format!("{ns}:53")
    };
    sock.send_to(&q, addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
    let msg = &buf[..n];
    if msg.len() < 12 {
        return Err("short DNS answer".into());
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("lookup {name}: no such host"));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut pos = 12;
    for _ in 0..qd {
        let (_, p) = read_name(msg, pos).ok_or("bad DNS answer")?;
        pos = p + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        let (_, p) = read_name(msg, pos).ok_or("bad DNS answer")?;
        let hdr = msg.get(p..p + 10).ok_or("bad DNS answer")?;
        let ty = u16::from_be_bytes([hdr[0], hdr[1]]);
        let rdlen = u16::from_be_bytes([hdr[8], hdr[9]]) as usize;
        let rd = p + 10;
        if ty == 33 {
            let port = u16::from_be_bytes([
                *msg.get(rd + 4).ok_or("bad")?,
                *msg.get(rd + 5).ok_or("bad")?,
            ]);
            let (target, _) = read_name(msg, rd + 6).ok_or("bad DNS answer")?;
            out.push((target, port));
        }
        pos = rd + rdlen;
    }
    Ok(out)
}

pub fn discover(domain: &str, service: &str, insecure: bool) -> Result<Vec<String>, String> {
    let suffix = if service.is_empty() {
        String::new()
    } else {
        format!("-{service}")
    };
    let mut eps = Vec::new();
    let mut errs = Vec::new();
    for (scheme, svc) in [("https", "etcd-client-ssl"), ("http", "etcd-client")] {
        match lookup_srv(&format!("_{svc}{suffix}._tcp.{domain}")) {
            Ok(recs) => {
                for (t, p) in recs {
                    eps.push(format!("{scheme}://{}:{p}", t.trim_end_matches('.')));
                }
            }
            Err(e) => errs.push(e),
        }
    }
    if eps.is_empty() {
        return Err(errs.join("; "));
    }
    if !insecure {
        eps.retain(|e| {
            if e.starts_with("http://") {
                eprintln!(
                    "ignoring discovered insecure endpoint {}",
                    crate::gofmt::quote(e)
                );
                false
            } else {
                true
            }
        });
    }
    Ok(eps)
}
