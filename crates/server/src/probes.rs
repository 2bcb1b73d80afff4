//! `/livez` and `/readyz`, as etcd 3.5.11+ and 3.6 serve them for Kubernetes probes: a list of
//! named checks, `ok` when all pass, 503 naming the failed ones otherwise; `?verbose` lists each
//! check (`[+]name ok`, `[-]name failed: reason`), `?exclude=name` (repeatable) skips one.
//!
//! - livez: `serializable_read` (the member answers from its own store);
//! - readyz: `data_corruption` (no CORRUPT alarm), `serializable_read`, `linearizable_read`
//!   (a read index round with the leader within a second).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use etcd_api::etcdserverpb::{AlarmType, RangeRequest};

use crate::server::EtcdServer;

/// How long the linearizable read may take (etcd: one second).
const READ_TIMEOUT: Duration = Duration::from_secs(1);

type Outcome = Result<(), String>;

async fn serializable_read(server: &EtcdServer) -> Outcome {
    let request = RangeRequest {
        key: b"health".to_vec(),
        limit: 1,
        keys_only: true,
        serializable: true,
        ..Default::default()
    };
    server
        .store
        .range(&request)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn linearizable_read(server: &EtcdServer) -> Outcome {
    match tokio::time::timeout(READ_TIMEOUT, server.linearizable_barrier()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcdserver: request timed out".to_string()),
    }
}

async fn data_corruption(server: &EtcdServer) -> Outcome {
    if server.has_alarm(AlarmType::Corrupt) {
        Err("alarm activated: CORRUPT".to_string())
    } else {
        Ok(())
    }
}

/// `?verbose` and every `?exclude=`.
struct Query {
    verbose: bool,
    exclude: Vec<String>,
}

fn parse_query(raw: Option<&str>) -> Query {
    let mut q = Query {
        verbose: false,
        exclude: Vec::new(),
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "verbose" => q.verbose = true,
            "exclude" => q.exclude.push(value.to_string()),
            _ => {}
        }
    }
    q
}

/// Runs the checks (those not excluded) and writes etcd's answer.
fn answer(results: Vec<(&'static str, Option<Outcome>)>, query: &Query, probe: &str) -> Response {
    let mut body = String::new();
    let mut failed = false;
    for (name, outcome) in &results {
        match outcome {
            None => body.push_str(&format!("[+]{name} excluded: ok\n")),
            Some(Ok(())) => body.push_str(&format!("[+]{name} ok\n")),
            Some(Err(why)) => {
                failed = true;
                body.push_str(&format!("[-]{name} failed: {why}\n"));
            }
        }
    }
    let (status, text) = if failed {
        body.push_str(&format!("{probe} check failed\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body)
    } else if query.verbose {
        body.push_str(&format!("{probe} check passed\n"));
        (StatusCode::OK, body)
    } else {
        (StatusCode::OK, "ok\n".to_string())
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

async fn run(
    server: &EtcdServer,
    names: &[&'static str],
    query: &Query,
) -> Vec<(&'static str, Option<Outcome>)> {
    let mut results = Vec::new();
    for name in names {
        if query.exclude.iter().any(|e| e == name) {
            results.push((*name, None));
            continue;
        }
        let outcome = match *name {
            "serializable_read" => serializable_read(server).await,
            "linearizable_read" => linearizable_read(server).await,
            "data_corruption" => data_corruption(server).await,
            _ => Ok(()),
        };
        results.push((*name, Some(outcome)));
    }
    results
}

pub async fn livez(State(server): State<Arc<EtcdServer>>, RawQuery(raw): RawQuery) -> Response {
    let query = parse_query(raw.as_deref());
    let results = run(&server, &["serializable_read"], &query).await;
    answer(results, &query, "livez")
}

pub async fn readyz(State(server): State<Arc<EtcdServer>>, RawQuery(raw): RawQuery) -> Response {
    let query = parse_query(raw.as_deref());
    let results = run(
        &server,
        &["data_corruption", "serializable_read", "linearizable_read"],
        &query,
    )
    .await;
    answer(results, &query, "readyz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_etcd() {
        let q = parse_query(Some("verbose&exclude=linearizable_read"));
        assert!(q.verbose);
        assert_eq!(q.exclude, vec!["linearizable_read".to_string()]);
        let ok = answer(
            vec![("serializable_read", Some(Ok(())))],
            &parse_query(None),
            "livez",
        );
        assert_eq!(ok.status(), StatusCode::OK);
        let failed = answer(
            vec![
                (
                    "data_corruption",
                    Some(Err("alarm activated: CORRUPT".into())),
                ),
                ("linearizable_read", None),
            ],
            &q,
            "readyz",
        );
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
