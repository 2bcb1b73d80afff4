//! Reading the v2 API's JSON answers as etcd's Go client does.
//!
//! [`parse`] checks and reads a body with the messages of Go's `encoding/json` scanner
//! (`invalid character 'p' after top-level value`, `unexpected end of JSON input`), which
//! etcdctl prints as they are for the members and auth APIs. [`decode`] then fills a Go-typed
//! value ([`Ty`], [`Dv`]) with `encoding/json`'s rules: keys matched case-insensitively (or
//! exactly, as the json-iterator configuration of the keys API does), `null` leaving values
//! alone, and a value of the wrong type recorded as the first error while decoding goes on,
//! leaving the zero value in place (etcdctl's output depends on that: `user get` prints the
//! empty role names such a failed first attempt leaves behind).
//!
//! Nothing here panics on any input; nesting is bounded as Go bounds it.

use crate::gofmt;

/// A JSON value, objects keeping their keys in order (duplicates included).
#[derive(Clone, Debug, PartialEq)]
pub enum JVal {
    Null,
    Bool(bool),
    /// The literal, as written.
    Num(String),
    Str(String),
    Arr(Vec<JVal>),
    Obj(Vec<(String, JVal)>),
}

/// Go's `maxNestingDepth`.
const MAX_DEPTH: usize = 10_000;

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

/// Go's `quoteChar`.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        c => {
            let q = gofmt::quote(&char::from(c).to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

const EOF_MSG: &str = "unexpected end of JSON input";

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn bad(&self, context: &str) -> String {
        match self.peek() {
            Some(c) => format!("invalid character {} {context}", quote_char(c)),
            None => EOF_MSG.to_string(),
        }
    }

    fn value(&mut self) -> Result<JVal, String> {
        self.skip_space();
        match self.peek() {
            None => Err(EOF_MSG.to_string()),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(JVal::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", JVal::Bool(true)),
            Some(b'f') => self.literal("false", JVal::Bool(false)),
            Some(b'n') => self.literal("null", JVal::Null),
            Some(_) => Err(self.bad("looking for beginning of value")),
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("exceeded max depth".to_string());
        }
        Ok(())
    }

    fn object(&mut self) -> Result<JVal, String> {
        self.enter()?;
        self.i += 1;
        let mut fields = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(JVal::Obj(fields));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.bad("looking for beginning of object key string"));
            }
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.bad("after object key"));
            }
            self.i += 1;
            let v = self.value()?;
            fields.push((key, v));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(JVal::Obj(fields));
                }
                _ => return Err(self.bad("after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<JVal, String> {
        self.enter()?;
        self.i += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(JVal::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(JVal::Arr(items));
                }
                _ => return Err(self.bad("after array element")),
            }
        }
    }

    fn literal(&mut self, word: &str, v: JVal) -> Result<JVal, String> {
        for (k, want) in word.bytes().enumerate() {
            match self.peek() {
                Some(c) if c == want => self.i += 1,
                _ if k == 0 => return Err(self.bad("looking for beginning of value")),
                _ => {
                    return Err(self.bad(&format!(
                        "in literal {word} (expecting {})",
                        quote_char(want)
                    )));
                }
            }
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<JVal, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.bad("in numeric literal")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.bad("after decimal point in numeric literal"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.bad("in exponent of numeric literal"));
            }
        }
        Ok(JVal::Num(
            String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
        ))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            match self.peek().and_then(|c| (c as char).to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.i += 1;
                }
                None => return Err(self.bad("in \\u hexadecimal character escape")),
            }
        }
        Ok(v)
    }

    /// A string, decoded as Go's `unquote`: bad UTF-8 and lone surrogates become U+FFFD.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(EOF_MSG.to_string());
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(EOF_MSG.to_string());
                    };
                    self.i += 1;
                    match e {
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'\\' | b'/' | b'"' => out.push(e as char),
                        b'u' => {
                            let r = self.hex4()?;
                            if (0xD800..0xDC00).contains(&r)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let r2 = self.hex4()?;
                                if (0xDC00..0xE000).contains(&r2) {
                                    let c = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                    continue;
                                }
                                self.i = save;
                            }
                            out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.bad("in string escape code"));
                        }
                    }
                }
                c if c < 0x20 => return Err(self.bad("in string literal")),
                c if c < 0x80 => {
                    out.push(c as char);
                    self.i += 1;
                }
                _ => {
                    let end = self.b[self.i..]
                        .iter()
                        .position(|&b| b < 0x80)
                        .map_or(self.b.len(), |p| self.i + p);
                    let mut chunk = &self.b[self.i..end];
                    while !chunk.is_empty() {
                        match std::str::from_utf8(chunk) {
                            Ok(s) => {
                                out.push_str(s);
                                chunk = &[];
                            }
                            Err(e) => {
                                let good = e.valid_up_to();
                                out.push_str(std::str::from_utf8(&chunk[..good]).unwrap_or(""));
                                out.push('\u{fffd}');
                                chunk = &chunk[good + 1..];
                            }
                        }
                    }
                    self.i = end;
                }
            }
        }
    }
}

/// Reads one JSON value filling the whole input, with Go's syntax error messages.
pub fn parse(body: &[u8]) -> Result<JVal, String> {
    let mut p = Parser {
        b: body,
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.skip_space();
    if p.peek().is_some() {
        return Err(p.bad("after top-level value"));
    }
    Ok(v)
}

/// A Go type a body is decoded into.
#[derive(Debug)]
pub enum Ty {
    Str,
    Bool,
    Int,
    U64,
    I64,
    /// `time.Time`, kept as its RFC 3339 text as Go would print it again.
    Time,
    /// Element type and the Go name of the slice type.
    Slice(&'static Ty, &'static str),
    /// Element type and the Go name of the pointer type.
    Ptr(&'static Ty, &'static str),
    Struct(&'static StructTy),
}

#[derive(Debug)]
pub struct StructTy {
    /// `reflect.Type.Name()`: empty for an anonymous struct.
    pub name: &'static str,
    /// The type as Go prints it in errors.
    pub go: &'static str,
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
}

impl Ty {
    fn go_name(&self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::U64 => "uint64",
            Ty::I64 => "int64",
            Ty::Time => "time.Time",
            Ty::Slice(_, n) | Ty::Ptr(_, n) => n,
            Ty::Struct(s) => s.go,
        }
    }

    pub fn zero(&self) -> Dv {
        match self {
            Ty::Str => Dv::Str(String::new()),
            Ty::Bool => Dv::Bool(false),
            Ty::Int | Ty::I64 => Dv::Int(0),
            Ty::U64 => Dv::U64(0),
            Ty::Time => Dv::Time(None),
            Ty::Slice(..) => Dv::Slice(None),
            Ty::Ptr(..) => Dv::Ptr(None),
            Ty::Struct(s) => Dv::Struct(s.fields.iter().map(|f| f.ty.zero()).collect()),
        }
    }
}

/// A decoded Go value. Slices and pointers tell nil from empty, as `reflect.DeepEqual` and
/// `encoding/json` do.
#[derive(Clone, Debug, PartialEq)]
pub enum Dv {
    Str(String),
    Bool(bool),
    Int(i64),
    U64(u64),
    Time(Option<String>),
    Slice(Option<Vec<Dv>>),
    Ptr(Option<Box<Dv>>),
    Struct(Vec<Dv>),
}

impl Dv {
    pub fn str(&self) -> &str {
        match self {
            Dv::Str(s) => s,
            _ => "",
        }
    }
    pub fn bool(&self) -> bool {
        matches!(self, Dv::Bool(true))
    }
    pub fn u64(&self) -> u64 {
        match self {
            Dv::U64(v) => *v,
            _ => 0,
        }
    }
    pub fn i64(&self) -> i64 {
        match self {
            Dv::Int(v) => *v,
            _ => 0,
        }
    }
    pub fn time(&self) -> Option<&str> {
        match self {
            Dv::Time(t) => t.as_deref(),
            _ => None,
        }
    }
    /// The elements of a slice (none for nil).
    pub fn items(&self) -> &[Dv] {
        match self {
            Dv::Slice(Some(v)) => v,
            _ => &[],
        }
    }
    /// What a pointer points to.
    pub fn deref(&self) -> Option<&Dv> {
        match self {
            Dv::Ptr(Some(b)) => Some(b),
            _ => None,
        }
    }
    /// Field `i` of a struct.
    pub fn field(&self, i: usize) -> &Dv {
        static NIL: Dv = Dv::Ptr(None);
        match self {
            Dv::Struct(f) => f.get(i).unwrap_or(&NIL),
            _ => &NIL,
        }
    }
    /// Strings of a `[]string`.
    pub fn strs(&self) -> Vec<String> {
        self.items().iter().map(|d| d.str().to_string()).collect()
    }
}

struct Decoder {
    case_sensitive: bool,
    err: Option<String>,
    struct_name: Option<&'static str>,
    fields: Vec<&'static str>,
}

impl Decoder {
    fn type_err(&mut self, what: &str, ty: &Ty) {
        if self.err.is_some() {
            return;
        }
        self.err = Some(match self.struct_name {
            Some(s) => format!(
                "json: cannot unmarshal {what} into Go struct field {s}.{} of type {}",
                self.fields.join("."),
                ty.go_name()
            ),
            None => format!(
                "json: cannot unmarshal {what} into Go value of type {}",
                ty.go_name()
            ),
        });
    }

    fn value(&mut self, v: &JVal, ty: &Ty, out: &mut Dv) {
        if let Ty::Ptr(inner, _) = ty {
            if *v == JVal::Null {
                *out = Dv::Ptr(None);
                return;
            }
            if !matches!(out, Dv::Ptr(Some(_))) {
                *out = Dv::Ptr(Some(Box::new(inner.zero())));
            }
            if let Dv::Ptr(Some(b)) = out {
                self.value(v, inner, b);
            }
            return;
        }
        match v {
            JVal::Null => {
                if let Ty::Slice(..) = ty {
                    *out = Dv::Slice(None);
                }
            }
            JVal::Bool(b) => match ty {
                Ty::Bool => *out = Dv::Bool(*b),
                _ => self.type_err("bool", ty),
            },
            JVal::Str(s) => match ty {
                Ty::Str => *out = Dv::Str(s.clone()),
                Ty::Time => match rfc3339(s) {
                    Some(t) => *out = Dv::Time(Some(t)),
                    None => {
                        if self.err.is_none() {
                            self.err = Some(format!(
                                "parsing time {} as \"2006-01-02T15:04:05Z07:00\"",
                                gofmt::quote(&format!("\"{s}\""))
                            ));
                        }
                    }
                },
                _ => self.type_err("string", ty),
            },
            JVal::Num(n) => match ty {
                Ty::Int | Ty::I64 => match n.parse::<i64>() {
                    Ok(x) => *out = Dv::Int(x),
                    Err(_) => self.type_err(&format!("number {n}"), ty),
                },
                Ty::U64 => match n.parse::<u64>() {
                    Ok(x) if !n.starts_with('+') => *out = Dv::U64(x),
                    _ => self.type_err(&format!("number {n}"), ty),
                },
                _ => self.type_err("number", ty),
            },
            JVal::Arr(items) => match ty {
                Ty::Slice(elem, _) => {
                    let mut vec = Vec::with_capacity(items.len());
                    for item in items {
                        let mut d = elem.zero();
                        self.value(item, elem, &mut d);
                        vec.push(d);
                    }
                    *out = Dv::Slice(Some(vec));
                }
                _ => self.type_err("array", ty),
            },
            JVal::Obj(members) => match ty {
                Ty::Struct(st) => {
                    if !matches!(out, Dv::Struct(_)) {
                        *out = ty.zero();
                    }
                    for (k, val) in members {
                        let idx = st.fields.iter().position(|f| f.key == k).or_else(|| {
                            if self.case_sensitive {
                                None
                            } else {
                                st.fields.iter().position(|f| fold_eq(f.key, k))
                            }
                        });
                        let Some(idx) = idx else { continue };
                        let field = &st.fields[idx];
                        let saved = self.struct_name;
                        self.struct_name = Some(st.name);
                        self.fields.push(field.key);
                        if let Dv::Struct(fs) = out
                            && let Some(slot) = fs.get_mut(idx)
                        {
                            self.value(val, &field.ty, slot);
                        }
                        self.fields.pop();
                        self.struct_name = saved;
                    }
                }
                _ => self.type_err("object", ty),
            },
        }
    }
}

fn fold_eq(a: &str, b: &str) -> bool {
    a.chars().count() == b.chars().count()
        && a.chars()
            .zip(b.chars())
            .all(|(x, y)| x == y || x.to_lowercase().eq(y.to_lowercase()))
}

/// Decodes `body` into a value of type `ty` as Go's `json.Unmarshal` (`case_sensitive`:
/// as json-iterator's case-sensitive configuration). Returns the value, partly filled when
/// there was a type error, and the first error.
pub fn decode(body: &[u8], ty: &Ty, case_sensitive: bool) -> (Dv, Option<String>) {
    let mut out = ty.zero();
    let v = match parse(body) {
        Ok(v) => v,
        Err(e) => return (out, Some(e)),
    };
    let mut d = Decoder {
        case_sensitive,
        err: None,
        struct_name: None,
        fields: Vec::new(),
    };
    d.value(&v, ty, &mut out);
    (out, d.err)
}

/// Go's `time.Parse(time.RFC3339, s)` followed by `MarshalJSON`'s `RFC3339Nano` text: the
/// same wall clock, fraction without trailing zeros, `Z` for a zero offset.
fn rfc3339(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days[(month - 1) as usize]
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac = String::new();
    if let Some(b'.' | b',') = b.get(i)
        && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    {
        i += 1;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if frac.len() < 9 {
                frac.push(*c as char);
            }
            i += 1;
        }
    }
    let zone = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => "Z".to_string(),
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (zh, zm) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if zh > 24 || zm > 59 {
                return None;
            }
            if zh == 0 && zm == 0 {
                "Z".to_string()
            } else {
                format!("{}{zh:02}:{zm:02}", *sign as char)
            }
        }
        _ => return None,
    };
    let frac = frac.trim_end_matches('0');
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{min:02}:{sec:02}{frac}{zone}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_as_gos() {
        for (body, want) in [
            (&b""[..], "unexpected end of JSON input"),
            (
                b"404 page not found",
                "invalid character 'p' after top-level value",
            ),
            (
                b"<html>",
                "invalid character '<' looking for beginning of value",
            ),
            (b"{\"a\" 1}", "invalid character '1' after object key"),
            (
                b"{\"a\":1 \"b\"}",
                "invalid character '\"' after object key:value pair",
            ),
            (b"[1 2]", "invalid character '2' after array element"),
            (
                b"{1}",
                "invalid character '1' looking for beginning of object key string",
            ),
            (b"tru", "unexpected end of JSON input"),
            (
                b"trux",
                "invalid character 'x' in literal true (expecting 'e')",
            ),
            (b"-x", "invalid character 'x' in numeric literal"),
            (
                b"1.x",
                "invalid character 'x' after decimal point in numeric literal",
            ),
            (b"\"\\q\"", "invalid character 'q' in string escape code"),
            (b"\"\x01\"", "invalid character '\\x01' in string literal"),
            (b"{\"a\":", "unexpected end of JSON input"),
        ] {
            assert_eq!(
                parse(body).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // As deep as Go allows, and deeper: on a stack like the one commands run on.
        std::thread::Builder::new()
            .stack_size(super::super::STACK_BYTES)
            .spawn(|| {
                let mut deep = vec![b'['; MAX_DEPTH];
                deep.extend(vec![b']'; MAX_DEPTH]);
                assert!(parse(&deep).is_ok());
                let (_, err) = decode(&deep, &Ty::Struct(&S), false);
                assert!(err.is_some());
                assert_eq!(
                    parse(&vec![b'['; MAX_DEPTH + 1]).unwrap_err(),
                    "exceeded max depth"
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn strings_decode_as_gos() {
        assert_eq!(
            parse(b"\"a\\u00e9\\ud83d\\ude00\\ud800x\xff\"").unwrap(),
            JVal::Str("a\u{e9}\u{1F600}\u{fffd}x\u{fffd}".to_string())
        );
    }

    static S: StructTy = StructTy {
        name: "T",
        go: "client.T",
        fields: &[
            Field {
                key: "name",
                ty: Ty::Str,
            },
            Field {
                key: "roles",
                ty: Ty::Slice(&Ty::Str, "[]string"),
            },
            Field {
                key: "n",
                ty: Ty::U64,
            },
        ],
    };

    #[test]
    fn type_errors_keep_going_with_zero_values() {
        let (v, err) = decode(
            br#"{"NAME":"x","roles":[{"role":"a"},"b"],"n":-1}"#,
            &Ty::Struct(&S),
            false,
        );
        assert_eq!(
            err.unwrap(),
            "json: cannot unmarshal object into Go struct field T.roles of type string"
        );
        assert_eq!(v.field(0).str(), "x");
        assert_eq!(v.field(1).strs(), vec!["".to_string(), "b".to_string()]);
        let (v, err) = decode(br#"{"NAME":"x","roles":[]}"#, &Ty::Struct(&S), true);
        assert!(err.is_none());
        assert_eq!(v.field(0).str(), "");
        assert_eq!(v.field(1), &Dv::Slice(Some(vec![])));
        let (_, err) = decode(b"[]", &Ty::Struct(&S), false);
        assert_eq!(
            err.unwrap(),
            "json: cannot unmarshal array into Go value of type client.T"
        );
    }

    #[test]
    fn times_print_as_go_marshals_them() {
        assert_eq!(
            rfc3339("2026-12-07T03:44:18.493907460Z").unwrap(),
            "2026-12-07T03:44:18.49390746Z"
        );
        assert_eq!(
            rfc3339("2024-02-29T00:00:00.000+00:00").unwrap(),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339("2024-02-29T00:00:00-05:30").unwrap(),
            "2024-02-29T00:00:00-05:30"
        );
        assert!(rfc3339("2023-02-29T00:00:00Z").is_none());
        assert!(rfc3339("yesterday").is_none());
    }
}
