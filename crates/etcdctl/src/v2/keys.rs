//! The keys API (`/v2/keys`) as etcd's client calls it, and the commands on it: `set`, `get`,
//! `mk`, `mkdir`, `setdir`, `update`, `updatedir`, `rm`, `rmdir`, `ls`.

use std::io::Read;
use std::time::Instant;

use super::client::{Action, Client, ClientError, HttpResponse};
use super::gourl::{self, GoUrl, Values};
use super::json::{self, Dv, Field, StructTy, Ty};
use super::output::print_response_key;
use super::{
    Ctx, EXIT_BAD_ARGS, EXIT_SERVER_ERROR, Exit, R, handle_error, handle_error_msg,
    must_new_client, out_line,
};

const KEYS_PREFIX: &str = "/v2/keys";

pub const ERR_EMPTY_BODY: &str = "client: response body is empty";
pub const ERR_INVALID_JSON: &str =
    "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint";
const FORM: &str = "application/x-www-form-urlencoded";

static NODE: StructTy = StructTy {
    name: "Node",
    go: "client.Node",
    fields: &[
        Field {
            key: "key",
            ty: Ty::Str,
        },
        Field {
            key: "dir",
            ty: Ty::Bool,
        },
        Field {
            key: "value",
            ty: Ty::Str,
        },
        Field {
            key: "nodes",
            ty: Ty::Slice(&NODE_PTR, "client.Nodes"),
        },
        Field {
            key: "createdIndex",
            ty: Ty::U64,
        },
        Field {
            key: "modifiedIndex",
            ty: Ty::U64,
        },
        Field {
            key: "expiration",
            ty: Ty::Ptr(&Ty::Time, "*time.Time"),
        },
        Field {
            key: "ttl",
            ty: Ty::I64,
        },
    ],
};
static NODE_PTR: Ty = Ty::Ptr(&NODE_TY, "*client.Node");
static NODE_TY: Ty = Ty::Struct(&NODE);
static RESPONSE: StructTy = StructTy {
    name: "Response",
    go: "client.Response",
    fields: &[
        Field {
            key: "action",
            ty: Ty::Str,
        },
        Field {
            key: "node",
            ty: Ty::Ptr(&NODE_TY, "*client.Node"),
        },
        Field {
            key: "prevNode",
            ty: Ty::Ptr(&NODE_TY, "*client.Node"),
        },
    ],
};
static ERROR: StructTy = StructTy {
    name: "Error",
    go: "client.Error",
    fields: &[
        Field {
            key: "errorCode",
            ty: Ty::Int,
        },
        Field {
            key: "message",
            ty: Ty::Str,
        },
        Field {
            key: "cause",
            ty: Ty::Str,
        },
        Field {
            key: "index",
            ty: Ty::U64,
        },
    ],
};

/// The client's `Node`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub key: String,
    pub dir: bool,
    pub value: String,
    /// `None`: Go's nil slice (`"nodes":null`); elements may be nil too.
    pub nodes: Option<Vec<Option<Node>>>,
    pub created_index: u64,
    pub modified_index: u64,
    pub expiration: Option<String>,
    pub ttl: i64,
}

impl Node {
    fn from_dv(d: &Dv) -> Node {
        let nodes = match d.field(3) {
            Dv::Slice(Some(items)) => {
                Some(items.iter().map(|i| i.deref().map(Node::from_dv)).collect())
            }
            _ => None,
        };
        Node {
            key: d.field(0).str().to_string(),
            dir: d.field(1).bool(),
            value: d.field(2).str().to_string(),
            nodes,
            created_index: d.field(4).u64(),
            modified_index: d.field(5).u64(),
            expiration: d
                .field(6)
                .deref()
                .and_then(|t| t.time())
                .map(str::to_string),
            ttl: d.field(7).i64(),
        }
    }
}

/// The client's `Response`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub action: String,
    pub node: Option<Node>,
    pub prev_node: Option<Node>,
    /// `X-Etcd-Index`.
    pub index: u64,
    pub cluster_id: String,
}

/// `unmarshalHTTPResponse`: a keys answer, or etcd's error (`100: Key not found (/foo) [12]`).
pub fn unmarshal_response(resp: &HttpResponse) -> Result<Response, ClientError> {
    if resp.status == 200 || resp.status == 201 {
        if resp.body.is_empty() {
            return Err(ClientError::other(ERR_EMPTY_BODY));
        }
        let (d, err) = json::decode(&resp.body, &Ty::Struct(&RESPONSE), true);
        if err.is_some() {
            return Err(ClientError::other(ERR_INVALID_JSON));
        }
        let mut r = Response {
            action: d.field(0).str().to_string(),
            node: d.field(1).deref().map(Node::from_dv),
            prev_node: d.field(2).deref().map(Node::from_dv),
            index: 0,
            cluster_id: resp.header("X-Etcd-Cluster-ID"),
        };
        let index = resp.header("X-Etcd-Index");
        if !index.is_empty() {
            r.index = index.parse().map_err(|_| {
                ClientError::other(format!(
                    "strconv.ParseUint: parsing {}: {}",
                    crate::gofmt::quote(&index),
                    if index.bytes().all(|b| b.is_ascii_digit()) {
                        "value out of range"
                    } else {
                        "invalid syntax"
                    }
                ))
            })?;
        }
        return Ok(r);
    }
    let (d, err) = json::decode(&resp.body, &Ty::Struct(&ERROR), false);
    if err.is_some() {
        return Err(ClientError::other(ERR_INVALID_JSON));
    }
    Err(ClientError::other(format!(
        "{}: {} ({}) [{}]",
        d.field(0).i64(),
        d.field(1).str(),
        d.field(2).str(),
        d.field(3).u64()
    )))
}

/// `v2KeysURL`: the endpoint's path, the prefix and the key, cleaned.
fn keys_url(ep: &GoUrl, key: &str) -> GoUrl {
    let mut u = ep.clone();
    let key = if !key.is_empty() && !key.starts_with('/') {
        format!("/{key}")
    } else {
        key.to_string()
    };
    u.path = gourl::canonical_url_path(&format!("{}{KEYS_PREFIX}{key}", ep.path));
    u
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `time.Duration(ttl) * time.Second`, and the seconds etcd's client sends for it (only
/// when positive), overflow included.
fn ttl_seconds(ttl: i64) -> Option<u64> {
    let d = ttl.wrapping_mul(1_000_000_000);
    if d <= 0 {
        return None;
    }
    let secs = (d / 1_000_000_000) as f64 + (d % 1_000_000_000) as f64 / 1e9;
    Some(secs as u64)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PrevExist {
    Ignore,
    Yes,
    No,
}

#[derive(Default)]
pub struct SetOptions {
    pub prev_value: String,
    pub prev_index: u64,
    pub prev_exist: Option<PrevExist>,
    pub ttl: i64,
    pub dir: bool,
}

/// `setAction`.
pub fn set_action(key: &str, value: &str, o: &SetOptions) -> Action {
    let (key, value) = (key.to_string(), value.to_string());
    let prev_value = o.prev_value.clone();
    let prev_index = o.prev_index;
    let prev_exist = match o.prev_exist {
        Some(PrevExist::Yes) => "true",
        Some(PrevExist::No) => "false",
        _ => "",
    };
    let dir = o.dir;
    let mut form = Values::new();
    if !dir {
        form.add("value", &value);
    }
    if let Some(s) = ttl_seconds(o.ttl) {
        form.add("ttl", &s.to_string());
    }
    let act = Action::new("PUT", move |ep| {
        let mut u = keys_url(ep, &key);
        let mut params = u.query();
        if dir {
            params.set("dir", "true");
        } else if !prev_value.is_empty() {
            params.set("prevValue", &prev_value);
        }
        if prev_index != 0 {
            params.set("prevIndex", &prev_index.to_string());
        }
        if !prev_exist.is_empty() {
            params.set("prevExist", prev_exist);
        }
        u.raw_query = params.encode();
        u
    })
    .body(FORM, form.encode().into_bytes());
    Action {
        one_shot: prev_exist == "false",
        ..act
    }
}

/// `createInOrderAction`.
fn create_in_order_action(dir: &str, value: &str, ttl: i64) -> Action {
    let dir = dir.to_string();
    let mut form = Values::new();
    form.add("value", value);
    if let Some(s) = ttl_seconds(ttl) {
        form.add("ttl", &s.to_string());
    }
    Action::new("POST", move |ep| keys_url(ep, &dir)).body(FORM, form.encode().into_bytes())
}

/// `getAction`.
fn get_action(key: &str, recursive: bool, sorted: bool, quorum: bool) -> Action {
    let key = key.to_string();
    Action::new("GET", move |ep| {
        let mut u = keys_url(ep, &key);
        let mut params = u.query();
        params.set("recursive", bool_str(recursive));
        params.set("sorted", bool_str(sorted));
        params.set("quorum", bool_str(quorum));
        u.raw_query = params.encode();
        u
    })
}

pub struct DeleteOptions {
    pub prev_value: String,
    pub prev_index: u64,
    pub dir: bool,
    pub recursive: bool,
}

/// `deleteAction`: never retried on another endpoint.
fn delete_action(key: &str, o: DeleteOptions) -> Action {
    let key = key.to_string();
    let mut act = Action::new("DELETE", move |ep| {
        let mut u = keys_url(ep, &key);
        let mut params = u.query();
        if !o.prev_value.is_empty() {
            params.set("prevValue", &o.prev_value);
        }
        if o.prev_index != 0 {
            params.set("prevIndex", &o.prev_index.to_string());
        }
        if o.dir {
            params.set("dir", "true");
        }
        if o.recursive {
            params.set("recursive", "true");
        }
        u.raw_query = params.encode();
        u
    });
    act.content_type = Some(FORM);
    act.one_shot = true;
    act
}

/// `waitAction`: a watch, waiting for the next change at or after `wait_index`.
pub fn wait_action(key: &str, wait_index: u64, recursive: bool) -> Action {
    let key = key.to_string();
    let mut act = Action::new("GET", move |ep| {
        let mut u = keys_url(ep, &key);
        let mut params = u.query();
        params.set("wait", "true");
        params.set("waitIndex", &wait_index.to_string());
        params.set("recursive", bool_str(recursive));
        u.raw_query = params.encode();
        u
    });
    act.wait = true;
    act
}

async fn call(
    hc: &mut Client,
    act: Action,
    deadline: Option<Instant>,
) -> Result<Response, ClientError> {
    let resp = hc.do_action(&act, deadline).await?;
    unmarshal_response(&resp)
}

/// etcdctl's `argOrStdin`: the argument, or all of stdin.
fn arg_or_stdin(args: &[String], i: usize) -> Option<String> {
    if let Some(a) = args.get(i) {
        return Some(a.clone());
    }
    let mut buf = Vec::new();
    match std::io::stdin().lock().read_to_end(&mut buf) {
        Ok(_) if !buf.is_empty() => Some(gourl::from_bytes(buf)),
        _ => None,
    }
}

fn print(ctx: &Ctx, resp: &Response) -> R {
    print_response_key(resp, &ctx.output()).map_err(|e| handle_error_msg(EXIT_SERVER_ERROR, &e))
}

fn key_arg(ctx: &Ctx) -> Result<String, Exit> {
    ctx.arg(0)
        .map(str::to_string)
        .ok_or_else(|| handle_error_msg(EXIT_BAD_ARGS, "key required"))
}

fn value_arg(ctx: &Ctx) -> Result<String, Exit> {
    arg_or_stdin(ctx.args(), 1).ok_or_else(|| handle_error_msg(EXIT_BAD_ARGS, "value required"))
}

/// `uint64(int)`, as etcdctl converts index flags.
fn index_flag(ctx: &Ctx, name: &str) -> u64 {
    ctx.int(name) as u64
}

pub async fn set(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let value = value_arg(ctx)?;
    let o = SetOptions {
        ttl: ctx.int("ttl"),
        prev_value: ctx.str("swap-with-value"),
        prev_index: index_flag(ctx, "swap-with-index"),
        ..SetOptions::default()
    };
    let resp = call(&mut hc, set_action(&key, &value, &o), ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    print(ctx, &resp)
}

pub async fn update(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let value = value_arg(ctx)?;
    let o = SetOptions {
        ttl: ctx.int("ttl"),
        prev_exist: Some(PrevExist::Yes),
        ..SetOptions::default()
    };
    let resp = call(&mut hc, set_action(&key, &value, &o), ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    print(ctx, &resp)
}

pub async fn mk(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let value = value_arg(ctx)?;
    let ttl = ctx.int("ttl");
    let act = if ctx.bool("in-order") {
        create_in_order_action(&key, &value, ttl)
    } else {
        let o = SetOptions {
            ttl,
            prev_exist: Some(PrevExist::No),
            ..SetOptions::default()
        };
        set_action(&key, &value, &o)
    };
    let resp = call(&mut hc, act, ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    print(ctx, &resp)
}

/// `mkdir` (must not exist), `setdir` (either way) and `updatedir` (must exist).
pub async fn mkdir(ctx: &Ctx, prev_exist: PrevExist) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let o = SetOptions {
        ttl: ctx.int("ttl"),
        dir: true,
        prev_exist: Some(prev_exist),
        ..SetOptions::default()
    };
    let resp = call(&mut hc, set_action(&key, "", &o), ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    if ctx.output() != "simple" {
        print(ctx, &resp)?;
    }
    Ok(())
}

async fn delete(ctx: &Ctx, o: DeleteOptions) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let resp = call(&mut hc, delete_action(&key, o), ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    let dir = resp.node.as_ref().is_some_and(|n| n.dir);
    if !dir || ctx.output() != "simple" {
        print(ctx, &resp)?;
    }
    Ok(())
}

pub async fn rm(ctx: &Ctx) -> R {
    let o = DeleteOptions {
        prev_value: ctx.str("with-value"),
        prev_index: index_flag(ctx, "with-index"),
        dir: ctx.bool("dir"),
        recursive: ctx.bool("recursive"),
    };
    delete(ctx, o).await
}

pub async fn rmdir(ctx: &Ctx) -> R {
    let o = DeleteOptions {
        prev_value: String::new(),
        prev_index: 0,
        dir: true,
        recursive: false,
    };
    delete(ctx, o).await
}

pub async fn get(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = key_arg(ctx)?;
    let act = get_action(&key, false, ctx.bool("sort"), ctx.bool("quorum"));
    let resp = call(&mut hc, act, ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    let Some(node) = &resp.node else {
        return Err(handle_error_msg(
            EXIT_SERVER_ERROR,
            "client: response has no node",
        ));
    };
    if node.dir {
        super::eprint_line(&format!("{}: is a directory", node.key));
        return Err(Exit(1));
    }
    print(ctx, &resp)
}

pub async fn ls(ctx: &Ctx) -> R {
    let mut hc = must_new_client(ctx).await?;
    let key = ctx.arg(0).unwrap_or("/").to_string();
    let act = get_action(
        &key,
        ctx.bool("recursive"),
        ctx.bool("sort"),
        ctx.bool("quorum"),
    );
    let resp = call(&mut hc, act, ctx.deadline())
        .await
        .map_err(|e| handle_error(EXIT_SERVER_ERROR, &e))?;
    if ctx.output() != "simple" {
        return print(ctx, &resp);
    }
    let Some(node) = &resp.node else {
        return Err(handle_error_msg(
            EXIT_SERVER_ERROR,
            "client: response has no node",
        ));
    };
    if !node.dir {
        out_line(&node.key);
    }
    let slash = ctx.bool("p");
    for n in node.nodes.iter().flatten().flatten() {
        print_tree(n, slash);
    }
    Ok(())
}

/// etcdctl's `rPrint`: the node's key (directories with `/` under `-p`), then its children.
fn print_tree(n: &Node, slash: bool) {
    // Nodes nest as deep as the answer does: walk them with a stack of our own.
    let mut stack = vec![n];
    while let Some(n) = stack.pop() {
        if n.dir && slash {
            out_line(&format!("{}/", n.key));
        } else {
            out_line(&n.key);
        }
        let children: Vec<&Node> = n.nodes.iter().flatten().flatten().collect();
        stack.extend(children.into_iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> GoUrl {
        GoUrl::parse("http://127.0.0.1:2379").unwrap()
    }

    #[test]
    fn requests_are_built_as_etcds_client_builds_them() {
        let o = SetOptions {
            prev_exist: Some(PrevExist::No),
            ttl: 5,
            ..SetOptions::default()
        };
        let act = set_action("a b", "v&1", &o);
        assert_eq!(
            (act.url)(&ep()).to_string(),
            "http://127.0.0.1:2379/v2/keys/a%20b?prevExist=false"
        );
        assert_eq!(act.body.as_deref(), Some(&b"ttl=5&value=v%261"[..]));
        assert!(act.one_shot);
        let o = SetOptions {
            dir: true,
            prev_value: "ignored".into(),
            prev_index: 3,
            ..SetOptions::default()
        };
        let act = set_action("/d/../x/", "", &o);
        assert_eq!(
            (act.url)(&ep()).to_string(),
            "http://127.0.0.1:2379/v2/keys/x/?dir=true&prevIndex=3"
        );
        assert_eq!(act.body.as_deref(), Some(&b""[..]));
        let act = get_action("foo", true, false, true);
        assert_eq!(
            (act.url)(&ep()).to_string(),
            "http://127.0.0.1:2379/v2/keys/foo?quorum=true&recursive=true&sorted=false"
        );
        let act = wait_action("/w", 0, false);
        assert_eq!(
            (act.url)(&ep()).to_string(),
            "http://127.0.0.1:2379/v2/keys/w?recursive=false&wait=true&waitIndex=0"
        );
        assert_eq!(ttl_seconds(0), None);
        assert_eq!(ttl_seconds(-1), None);
        assert_eq!(ttl_seconds(100), Some(100));
    }

    #[test]
    fn answers_decode_as_etcds_client_decodes_them() {
        let ok = |body: &str| HttpResponse {
            status: 200,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        };
        let r = unmarshal_response(&ok(
            r#"{"action":"get","node":{"key":"/d","dir":true,"nodes":[{"key":"/d/a","value":"1","modifiedIndex":7,"createdIndex":7}]}}"#,
        ))
        .unwrap();
        let n = r.node.unwrap();
        assert!(n.dir);
        assert_eq!(n.nodes.unwrap()[0].as_ref().unwrap().value, "1");
        for bad in [
            "",
            "x",
            r#"{"action":1}"#,
            r#"{"Action":"get","node":{"key":5}}"#,
        ] {
            assert!(unmarshal_response(&ok(bad)).is_err(), "{bad}");
        }
        let e = HttpResponse {
            status: 404,
            headers: Default::default(),
            body: br#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":12}"#
                .to_vec(),
        };
        assert_eq!(
            unmarshal_response(&e).unwrap_err().to_string(),
            "100: Key not found (/foo) [12]"
        );
        let e = HttpResponse {
            status: 404,
            headers: Default::default(),
            body: b"404 page not found\n".to_vec(),
        };
        assert_eq!(
            unmarshal_response(&e).unwrap_err().to_string(),
            ERR_INVALID_JSON
        );
    }
}
