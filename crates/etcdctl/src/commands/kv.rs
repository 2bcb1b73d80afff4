//! get, put, del, txn and compaction.

use std::io::Read;

use etcd_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, range_request, request_op,
};

use crate::Cx;
use crate::cli::{self, Flags};
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::gofmt;

pub const PUT_LONG: &str = "
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
";

/// The range end for `--prefix` / `--from-key` and the key they apply to.
fn prefix_or_from_key(key: &mut Vec<u8>, prefix: bool, from_key: bool) -> Option<Vec<u8>> {
    if prefix {
        if key.is_empty() {
            *key = vec![0];
            return Some(vec![0]);
        }
        return Some(etcd_client::prefix_end(key));
    }
    if from_key {
        if key.is_empty() {
            *key = vec![0];
        }
        return Some(vec![0]);
    }
    None
}

pub fn get_op(flags: &Flags, args: &[String]) -> RangeRequest {
    if args.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        );
    }
    let prefix = flags.bool("prefix");
    let from_key = flags.bool("from-key");
    if prefix && from_key {
        exit::fail(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        );
    }
    let mut req = RangeRequest::default();
    match flags.str("consistency").as_str() {
        "s" => req.serializable = true,
        "l" => {}
        other => exit::fail(
            EXIT_BAD_FEATURE,
            &format!("unknown consistency flag {}", gofmt::quote(other)),
        ),
    }
    let mut key = crate::rawarg::bytes(&args[0]);
    if args.len() > 1 {
        if prefix || from_key {
            exit::fail(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            );
        }
        req.range_end = crate::rawarg::bytes(&args[1]);
    }
    req.limit = flags.int("limit");
    let rev = flags.int("rev");
    if rev > 0 {
        req.revision = rev;
    }
    let order = flags.str("order");
    let sort_order = match order.to_uppercase().as_str() {
        "ASCEND" => range_request::SortOrder::Ascend,
        "DESCEND" => range_request::SortOrder::Descend,
        "" => range_request::SortOrder::None,
        _ => exit::fail(EXIT_BAD_FEATURE, &format!("bad sort order {order}")),
    };
    let by = flags.str("sort-by");
    let sort_target = match by.to_uppercase().as_str() {
        "CREATE" => range_request::SortTarget::Create,
        "KEY" | "" => range_request::SortTarget::Key,
        "MODIFY" => range_request::SortTarget::Mod,
        "VALUE" => range_request::SortTarget::Value,
        "VERSION" => range_request::SortTarget::Version,
        _ => exit::fail(EXIT_BAD_FEATURE, &format!("bad sort target {by}")),
    };
    // clientv3's WithSort: ascending by key is the server's default order.
    let mut sort_order = sort_order;
    if sort_target == range_request::SortTarget::Key
        && sort_order == range_request::SortOrder::Ascend
    {
        sort_order = range_request::SortOrder::None;
    }
    req.sort_order = sort_order as i32;
    req.sort_target = sort_target as i32;
    if let Some(end) = prefix_or_from_key(&mut key, prefix, from_key) {
        req.range_end = end;
    }
    req.keys_only = flags.bool("keys-only");
    req.key = key;
    req
}

pub fn put_op(flags: &Flags, args: &[String]) -> PutRequest {
    if args.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "put command needs 1 argument and input from stdin or 2 arguments",
        );
    }
    let ignore_value = flags.bool("ignore-value");
    if ignore_value && args.len() > 1 {
        exit::fail(
            EXIT_BAD_ARGS,
            "put command needs only 1 argument when 'ignore-value' is set",
        );
    }
    let mut value = Vec::new();
    if !ignore_value {
        if args.len() > 1 {
            value = crate::rawarg::bytes(&args[1]);
        } else {
            let mut buf = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut buf);
            if buf.is_empty() {
                exit::fail(
                    EXIT_BAD_ARGS,
                    "put command needs 1 argument and input from stdin or 2 arguments",
                );
            }
            value = buf;
        }
    }
    let lease_str = flags.str("lease");
    let id = gofmt::parse_int_base(&lease_str, 16).unwrap_or_else(|e| {
        exit::fail(
            EXIT_BAD_ARGS,
            &format!("bad lease ID ({e}), expecting ID in Hex"),
        )
    });
    PutRequest {
        key: crate::rawarg::bytes(&args[0]),
        value,
        lease: id,
        prev_kv: flags.bool("prev-kv"),
        ignore_value,
        ignore_lease: flags.bool("ignore-lease"),
    }
}

pub fn del_op(flags: &Flags, args: &[String]) -> DeleteRangeRequest {
    if args.is_empty() || args.len() > 2 {
        exit::fail(
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        );
    }
    let prefix = flags.bool("prefix");
    let from_key = flags.bool("from-key");
    if prefix && from_key {
        exit::fail(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        );
    }
    let mut req = DeleteRangeRequest::default();
    let mut key = crate::rawarg::bytes(&args[0]);
    if args.len() > 1 {
        if prefix || from_key {
            exit::fail(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            );
        }
        req.range_end = crate::rawarg::bytes(&args[1]);
    }
    if let Some(end) = prefix_or_from_key(&mut key, prefix, from_key) {
        req.range_end = end;
    }
    req.prev_kv = flags.bool("prev-kv");
    req.key = key;
    req
}

pub async fn get(cx: Cx) -> i32 {
    let req = get_op(&cx.flags, &cx.args);
    let c = cx.client().await;
    let mut kv = c.client.kv.clone();
    let resp = crate::call!(c, kv.range(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let mut p = cx.printer;
    if cx.flags.bool("print-value-only") {
        if p.format != crate::printer::Format::Simple {
            exit::fail(
                EXIT_BAD_ARGS,
                "print-value-only is only for `--write-out=simple`",
            );
        }
        p.value_only = true;
    }
    p.get(&resp);
    0
}

pub async fn put(cx: Cx) -> i32 {
    let req = put_op(&cx.flags, &cx.args);
    let c = cx.client().await;
    let mut kv = c.client.kv.clone();
    let resp = crate::call!(c, kv.put(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.put(&resp);
    0
}

pub async fn del(cx: Cx) -> i32 {
    let req = del_op(&cx.flags, &cx.args);
    let c = cx.client().await;
    let mut kv = c.client.kv.clone();
    let resp = crate::call!(c, kv.delete_range(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.del(&resp);
    0
}

pub async fn compaction(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "compaction command needs 1 argument");
    }
    let rev = gofmt::parse_int_base(&cx.args[0], 10).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let c = cx.client().await;
    let mut kv = c.client.kv.clone();
    let req = CompactionRequest {
        revision: rev,
        physical: cx.flags.bool("physical"),
    };
    crate::call!(c, kv.compact(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    println!("compacted revision {rev}");
    0
}

/// etcdctl's `argify`: words, double-quoted strings (unquoted) and single-quoted strings.
pub fn argify(s: &str) -> Vec<String> {
    let b: Vec<char> = s.chars().collect();
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let mut raw: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '"' {
            let mut j = i + 1;
            let mut closed = None;
            while j < b.len() {
                if b[j] == '\\' {
                    j += 2;
                    continue;
                }
                if b[j] == '"' {
                    closed = Some(j);
                    break;
                }
                j += 1;
            }
            if let Some(end) = closed {
                raw.push(b[i..=end].iter().collect());
                i = end + 1;
            } else {
                i += 1;
            }
        } else if c == '\'' {
            match b[i + 1..].iter().position(|&x| x == '\'') {
                Some(off) => {
                    let end = i + 1 + off;
                    raw.push(b[i..=end].iter().collect());
                    i = end + 1;
                }
                None => i += 1,
            }
        } else if is_space(c) {
            i += 1;
        } else {
            let mut j = i;
            while j < b.len() && !is_space(b[j]) {
                j += 1;
            }
            raw.push(b[i..j].iter().collect());
            i = j;
        }
    }
    let n = raw.len();
    raw.into_iter()
        .map(|a| {
            if a.starts_with('\'') {
                // etcdctl 3.4 slices by the number of arguments, not the argument's length.
                let end = n.saturating_sub(1);
                match a.get(1..end) {
                    Some(s) if end >= 1 => s.to_string(),
                    _ => exit::fail(2, "panic: runtime error: slice bounds out of range"),
                }
            } else if a.starts_with('"') {
                match gofmt::unquote_prefix(&a) {
                    Some((v, "")) => v,
                    _ => exit::fail(EXIT_INVALID_INPUT, "unexpected EOF"),
                }
            } else {
                a
            }
        })
        .collect()
}

fn read_line(r: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => exit::fail(EXIT_INVALID_INPUT, "EOF"),
        Ok(_) if !line.ends_with('\n') => exit::fail(EXIT_INVALID_INPUT, "EOF"),
        Ok(_) => line,
        Err(e) => exit::fail(EXIT_INVALID_INPUT, &e.to_string()),
    }
}

pub fn parse_compare(line: &str) -> Result<Compare, String> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(format!("malformed comparison: {line}"));
    };
    // fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)
    let (key, rest) = match gofmt::unquote_prefix(rest) {
        Some(x) => x,
        None => {
            return Err(format!(
                "malformed comparison: {line}; got {target}(\"\") \"\" \"\""
            ));
        }
    };
    let Some(rest) = rest.strip_prefix(')') else {
        return Err(format!(
            "malformed comparison: {line}; got {target}({}) \"\" \"\"",
            gofmt::quote(&key)
        ));
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let op_end = rest.find([' ', '\t', '\n']).unwrap_or(rest.len());
    let op = &rest[..op_end];
    let rest = &rest[op_end..];
    let (val, _) = match gofmt::unquote_prefix(rest.trim_start_matches([' ', '\t'])) {
        Some(x) => x,
        None => {
            return Err(format!(
                "malformed comparison: {line}; got {target}({}) {op} \"\"",
                gofmt::quote(&key)
            ));
        }
    };
    let result = match op {
        "=" | "==" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        ">" => compare::CompareResult::Greater,
        "<" => compare::CompareResult::Less,
        _ => exit::fail(2, "panic: Unknown result op"),
    };
    let int = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (tgt, union) = match target {
        "ver" | "version" => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(int(&val)?),
        ),
        "c" | "create" => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(int(&val)?),
        ),
        "m" | "mod" => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(int(&val)?),
        ),
        "val" | "value" => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(val.as_bytes().to_vec()),
        ),
        // clientv3.Compare panics on a string lease value, as etcdctl 3.4 gives it.
        "lease" => exit::fail(2, "panic: bad compare value"),
        _ => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {target})"
            ));
        }
    };
    Ok(Compare {
        result: result as i32,
        target: tgt as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

fn parse_request(line: &str) -> Result<RequestOp, String> {
    let args = argify(line);
    if args.len() < 2 {
        return Err(format!("invalid txn compare request: {line}"));
    }
    let full = crate::tree();
    let mut root = cli::Cmd::group("", "", Vec::new());
    for c in full.subs {
        if matches!(c.name, "put" | "get" | "del") {
            root.subs.push(c);
        }
    }
    let inv = match cli::parse(&root, &args) {
        Ok(inv) if inv.path.len() == 2 && !inv.help => inv,
        _ => return Err(format!("invalid txn request: {line}")),
    };
    let f = &inv.flags;
    let op = match inv.cmd().name {
        "put" => request_op::Request::RequestPut(put_op(f, &inv.args)),
        "get" => request_op::Request::RequestRange(get_op(f, &inv.args)),
        _ => request_op::Request::RequestDeleteRange(del_op(f, &inv.args)),
    };
    Ok(RequestOp { request: Some(op) })
}

pub async fn txn(cx: Cx) -> i32 {
    if !cx.args.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "txn command does not accept argument");
    }
    let interactive = cx.flags.bool("interactive");
    let cfg = cx.cfg();
    // clientv3.New connects lazily; the txn itself has no deadline (context.Background()).
    let connect = tokio::spawn(async move { cfg.connect(None).await });
    let prompt = |s: &str| {
        if interactive {
            println!("{s}");
        }
    };
    let mut stdin = std::io::stdin().lock();
    let mut req = TxnRequest::default();
    prompt("compares:");
    loop {
        let line = read_line(&mut stdin);
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        match parse_compare(line) {
            Ok(c) => req.compare.push(c),
            Err(e) => exit::fail(EXIT_INVALID_INPUT, &e),
        }
    }
    for (prompt_text, list) in [
        ("success requests (get, put, del):", &mut req.success),
        ("failure requests (get, put, del):", &mut req.failure),
    ] {
        prompt(prompt_text);
        loop {
            let line = read_line(&mut stdin);
            let line = line.trim();
            if line.is_empty() {
                break;
            }
            match parse_request(line) {
                Ok(op) => list.push(op),
                Err(e) => exit::fail(EXIT_INVALID_INPUT, &e),
            }
        }
    }
    drop(stdin);
    let c = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err((code, msg))) => exit::fail(code, &msg),
        Err(e) => exit::fail(EXIT_ERROR, &e.to_string()),
    };
    let mut kv = c.client.kv.clone();
    let resp = crate::call!(c, kv.txn(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.txn(&resp);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_like_etcdctl() {
        assert_eq!(argify("put a \"b c\""), vec!["put", "a", "b c"]);
        assert_eq!(argify("  get   k  "), vec!["get", "k"]);
        assert_eq!(argify("put a \"x\\ny\""), vec!["put", "a", "x\ny"]);
    }

    #[test]
    fn compares() {
        let c = parse_compare("mod(\"a\") > \"0\"").unwrap();
        assert_eq!(c.key, b"a");
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        let c = parse_compare("value(\"k\") = \"v v\"").unwrap();
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"v v".to_vec()))
        );
        assert_eq!(
            parse_compare("bad").unwrap_err(),
            "malformed comparison: bad"
        );
        assert!(
            parse_compare("ver(\"a\") = \"x\"")
                .unwrap_err()
                .starts_with("invalid txn compare request")
        );
    }
}
