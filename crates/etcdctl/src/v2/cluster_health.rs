//! `cluster-health`: the member list, then `GET <client URL>/health` on each member (the
//! first of its URLs that answers), and a verdict: healthy (exit 0), degraded or
//! unavailable (exit 5). `--forever` checks again every ten seconds.

use std::time::Duration;

use super::client::Transport;
use super::gourl::GoUrl;
use super::json::{self, Field, StructTy, Ty};
use super::{
    Ctx, EXIT_CLUSTER_NOT_HEALTHY, EXIT_SERVER_ERROR, Exit, R, exit_on_interrupt, handle_error,
    handle_error_msg, member, must_new_client_no_sync, out, out_line,
};

static HEALTH_STR: StructTy = StructTy {
    name: "",
    go: "struct { Health string }",
    fields: &[Field {
        key: "Health",
        ty: Ty::Str,
    }],
};
static HEALTH_BOOL: StructTy = StructTy {
    name: "",
    go: "struct { Health bool }",
    fields: &[Field {
        key: "Health",
        ty: Ty::Bool,
    }],
};

/// How often `--forever` checks.
const INTERVAL: Duration = Duration::from_secs(10);
/// Go's `http.Client` follows this many redirects.
const MAX_REDIRECTS: usize = 10;

/// `http.Client.Get(url + "/health")` and the verdict in its answer (`{"health":"true"}`, or
/// a boolean from older members). Errors read as Go's (`Get "<url>": ...`).
async fn check(tr: &Transport, url: &str) -> Result<bool, String> {
    let mut target = format!("{url}/health");
    let mut u = GoUrl::parse(&target)?;
    let mut redirects = 0;
    let resp = loop {
        let resp = tr
            .round_trip(&u, "GET", None, None, None)
            .await
            .map_err(|e| format!("Get {}: {}", crate::gofmt::quote(&u.to_string()), e.text))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("Location")
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        match location {
            Some(loc) if matches!(status, 301 | 302 | 303 | 307 | 308) => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(format!(
                        "Get {}: stopped after 10 redirects",
                        crate::gofmt::quote(&loc)
                    ));
                }
                target = loc;
                u = GoUrl::parse(&target)
                    .map_err(|e| format!("Get {}: {e}", crate::gofmt::quote(&target)))?;
            }
            _ => break resp,
        }
    };
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    {
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.is_incomplete_message() {
                    "unexpected EOF".to_string()
                } else {
                    e.to_string()
                }
            })?;
            if let Ok(d) = frame.into_data() {
                if bytes.len() + d.len() > 1 << 20 {
                    return Err("health answer over 1 MiB".to_string());
                }
                bytes.extend_from_slice(&d);
            }
        }
    }
    let (s, err) = json::decode(&bytes, &Ty::Struct(&HEALTH_STR), false);
    if err.is_none() {
        return Ok(s.field(0).str() == "true");
    }
    let (b, err) = json::decode(&bytes, &Ty::Struct(&HEALTH_BOOL), false);
    match err {
        Some(e) => Err(e),
        None => Ok(b.field(0).bool()),
    }
}

pub async fn run(ctx: &Ctx) -> R {
    let forever = ctx.bool("forever");
    if forever {
        exit_on_interrupt();
    }
    let tr = super::transport(ctx).map_err(|e| handle_error_msg(EXIT_SERVER_ERROR, &e))?;
    let mut cln = must_new_client_no_sync(ctx)?;
    let ms = match member::list(&mut cln, None).await {
        Ok(ms) => ms,
        Err(e) => {
            out_line("cluster may be unhealthy: failed to list members");
            return Err(handle_error(EXIT_SERVER_ERROR, &e));
        }
    };
    loop {
        let mut healthy = 0;
        for m in &ms {
            if m.client_urls.is_empty() {
                out_line(&format!(
                    "member {} is unreachable: no available published client urls",
                    m.id
                ));
                continue;
            }
            let mut checked = false;
            for url in &m.client_urls {
                match check(&tr, url).await {
                    Err(e) => {
                        out_line(&format!(
                            "failed to check the health of member {} on {url}: {e}",
                            m.id
                        ));
                        continue;
                    }
                    Ok(true) => {
                        out_line(&format!(
                            "member {} is healthy: got healthy result from {url}",
                            m.id
                        ));
                        healthy += 1;
                    }
                    Ok(false) => out_line(&format!(
                        "member {} is unhealthy: got unhealthy result from {url}",
                        m.id
                    )),
                }
                checked = true;
                break;
            }
            if !checked {
                out_line(&format!(
                    "member {} is unreachable: [{}] are all unreachable",
                    m.id,
                    m.client_urls.join(" ")
                ));
            }
        }
        if healthy == ms.len() {
            out_line("cluster is healthy");
        } else if healthy == 0 {
            out_line("cluster is unavailable");
        } else {
            out_line("cluster is degraded");
        }
        if !forever {
            if healthy == ms.len() {
                return Ok(());
            }
            return Err(Exit(EXIT_CLUSTER_NOT_HEALTHY));
        }
        out("\nnext check after 10 second...\n\n");
        tokio::time::sleep(INTERVAL).await;
    }
}
