//! JSON as Go's `encoding/json` writes etcdctl's responses: fields in struct order, Go's
//! `omitempty`, uint64 as numbers, bytes as base64, HTML characters escaped.

use crate::gofmt;

pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An object under construction. `omit` arguments follow Go's `omitempty`.
#[derive(Default)]
pub struct Obj {
    s: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj {
            s: String::from("{"),
        }
    }
    pub fn raw(mut self, key: &str, raw: &str) -> Obj {
        if self.s.len() > 1 {
            self.s.push(',');
        }
        self.s.push_str(&string(key));
        self.s.push(':');
        self.s.push_str(raw);
        self
    }
    pub fn raw_opt(self, key: &str, raw: Option<String>) -> Obj {
        match raw {
            Some(r) => self.raw(key, &r),
            None => self,
        }
    }
    pub fn u64(self, key: &str, v: u64, omit: bool) -> Obj {
        if omit && v == 0 {
            return self;
        }
        self.raw(key, &v.to_string())
    }
    pub fn i64(self, key: &str, v: i64, omit: bool) -> Obj {
        if omit && v == 0 {
            return self;
        }
        self.raw(key, &v.to_string())
    }
    pub fn bool(self, key: &str, v: bool, omit: bool) -> Obj {
        if omit && !v {
            return self;
        }
        self.raw(key, if v { "true" } else { "false" })
    }
    pub fn str(self, key: &str, v: &str, omit: bool) -> Obj {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(key, &string(v))
    }
    pub fn bytes(self, key: &str, v: &[u8], omit: bool) -> Obj {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(key, &format!("\"{}\"", gofmt::base64(v)))
    }
    pub fn strs(self, key: &str, v: &[String], omit: bool) -> Obj {
        if omit && v.is_empty() {
            return self;
        }
        let items: Vec<String> = v.iter().map(|s| string(s)).collect();
        self.raw(key, &format!("[{}]", items.join(",")))
    }
    /// A slice of objects; `omit` drops it when empty, else an empty slice prints `null`
    /// when `nil_when_empty` (a nil Go slice) and `[]` otherwise.
    pub fn list(self, key: &str, items: Vec<String>, omit: bool, nil_when_empty: bool) -> Obj {
        if items.is_empty() {
            if omit {
                return self;
            }
            return self.raw(key, if nil_when_empty { "null" } else { "[]" });
        }
        self.raw(key, &format!("[{}]", items.join(",")))
    }
    pub fn done(mut self) -> String {
        self.s.push('}');
        self.s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go() {
        let o = Obj::new()
            .u64("a", 0, true)
            .u64("b", 1, true)
            .bytes("k", b"foo", true)
            .str("s", "<&>", false)
            .done();
        assert_eq!(o, r#"{"b":1,"k":"Zm9v","s":"\u003c\u0026\u003e"}"#);
    }
}
