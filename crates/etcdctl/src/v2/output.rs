//! etcdctl's `printResponseKey`: a keys answer in the `simple`, `extended` (RFC 2822 style)
//! or `json` format (Go's `json.Marshal` of the client's `Response`).

use super::keys::{Node, Response};
use super::{eprint_line, out_line};
use crate::json::{Obj, string};

fn node_json(n: &Node) -> String {
    let nodes = match &n.nodes {
        None => "null".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|c| c.as_ref().map_or_else(|| "null".to_string(), node_json))
                .collect();
            format!("[{}]", items.join(","))
        }
    };
    Obj::new()
        .str("key", &n.key, false)
        .bool("dir", n.dir, true)
        .str("value", &n.value, false)
        .raw("nodes", &nodes)
        .u64("createdIndex", n.created_index, false)
        .u64("modifiedIndex", n.modified_index, false)
        .raw_opt("expiration", n.expiration.as_deref().map(string))
        .i64("ttl", n.ttl, true)
        .done()
}

fn opt_node_json(n: Option<&Node>) -> String {
    n.map_or_else(|| "null".to_string(), node_json)
}

/// The client's `Response` as `json.Marshal` writes it (`Index` and `ClusterID` are `-`).
pub fn response_json(r: &Response) -> String {
    Obj::new()
        .str("action", &r.action, false)
        .raw("node", &opt_node_json(r.node.as_ref()))
        .raw("prevNode", &opt_node_json(r.prev_node.as_ref()))
        .done()
}

/// Prints a keys answer; an answer without the node the format needs is an error (etcd's
/// etcdctl would crash on it).
pub fn print_response_key(r: &Response, format: &str) -> Result<(), String> {
    let node = || r.node.as_ref().ok_or("client: response has no node");
    match format {
        "simple" => {
            if r.action != "delete" {
                out_line(&node()?.value);
            } else {
                let prev = r
                    .prev_node
                    .as_ref()
                    .ok_or("client: response has no prevNode")?;
                out_line(&format!("PrevNode.Value: {}", prev.value));
            }
        }
        "extended" => {
            let n = node()?;
            let mut s = format!(
                "Key: {}\nCreated-Index: {}\nModified-Index: {}\n",
                n.key, n.created_index, n.modified_index
            );
            if let Some(p) = &r.prev_node {
                s.push_str(&format!("PrevNode.Value: {}\n", p.value));
            }
            s.push_str(&format!("TTL: {}\nIndex: {}\n", n.ttl, r.index));
            if r.action != "delete" {
                s.push_str(&format!("\n{}\n", n.value));
            }
            super::out(&s);
        }
        "json" => out_line(&response_json(r)),
        other => eprint_line(&format!("Unsupported output format: {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshals_as_go() {
        let r = Response {
            action: "set".into(),
            node: Some(Node {
                key: "/a<b>".into(),
                value: "v&".into(),
                created_index: 4,
                modified_index: 5,
                expiration: Some("2026-12-07T03:44:18.49390746Z".into()),
                ttl: 100,
                ..Node::default()
            }),
            prev_node: Some(Node {
                key: "/d".into(),
                dir: true,
                nodes: Some(vec![None]),
                ..Node::default()
            }),
            index: 9,
            cluster_id: String::new(),
        };
        assert_eq!(
            response_json(&r),
            r#"{"action":"set","node":{"key":"/a\u003cb\u003e","value":"v\u0026","nodes":null,"createdIndex":4,"modifiedIndex":5,"expiration":"2026-12-07T03:44:18.49390746Z","ttl":100},"prevNode":{"key":"/d","dir":true,"value":"","nodes":[null],"createdIndex":0,"modifiedIndex":0}}"#
        );
    }
}
