//! Go's `net/url` and `path` as etcd's v2 client uses them: the endpoint URLs it parses and
//! prints (`--debug`, error messages), the request paths it builds (`path.Clean`,
//! `path.Join`) and escapes, and the query strings and forms it encodes (`url.Values`).
//!
//! Keys and values come from the command line as `rawarg` strings (bytes that are not UTF-8
//! ride along as private-use characters); escaping works on their original bytes, as Go's
//! does on its byte strings.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::gofmt;
use crate::rawarg;

/// A string from bytes, keeping bytes that are not UTF-8 as `rawarg` does.
pub fn from_bytes(b: Vec<u8>) -> String {
    rawarg::decode(&OsString::from_vec(b))
}

/// Go's `path.Clean`.
pub fn clean(path: &str) -> String {
    let p = path.as_bytes();
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p[0] == b'/';
    let n = p.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if p[r] == b'/' || (p[r] == b'.' && (r + 1 == n || p[r + 1] == b'/')) {
            // An empty element or `.`.
            r += 1;
        } else if p[r] == b'.' && p[r + 1] == b'.' && (r + 2 == n || p[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                // Back to the slash before the last element, that slash included.
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && p[r] != b'/' {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".to_string();
    }
    // Only whole runs between slashes were copied, so the bytes are still UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `path.Join`.
pub fn join(elems: &[&str]) -> String {
    if elems.iter().all(|e| e.is_empty()) {
        return String::new();
    }
    let mut buf = String::new();
    for e in elems {
        if !buf.is_empty() || !e.is_empty() {
            if !buf.is_empty() {
                buf.push('/');
            }
            buf.push_str(e);
        }
    }
    clean(&buf)
}

/// etcd's `pathutil.CanonicalURLPath`: rooted, cleaned, trailing slash kept.
pub fn canonical_url_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let p = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut np = clean(&p);
    if p.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    UserPassword,
    QueryComponent,
    Fragment,
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::QueryComponent => true,
                Mode::Fragment => false,
                Mode::Host => true,
            };
        }
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for b in rawarg::bytes(s) {
        if should_escape(b, mode) {
            if b == b' ' && mode == Mode::QueryComponent {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(b as char);
        }
    }
    out
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(unhex),
                    b.get(i + 2).copied().and_then(unhex),
                ) else {
                    let end = (i + 3).min(b.len());
                    let bad = String::from_utf8_lossy(&b[i..end]);
                    return Err(format!("invalid URL escape {}", gofmt::quote(&bad)));
                };
                if mode == Mode::Host && hi < 8 && &b[i..i + 3] != b"%25" {
                    let bad = String::from_utf8_lossy(&b[i..i + 3]);
                    return Err(format!("invalid URL escape {}", gofmt::quote(&bad)));
                }
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if mode == Mode::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {} in host name",
                        gofmt::quote(&(c as char).to_string())
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(from_bytes(out))
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    escape(s, Mode::QueryComponent)
}

/// Go's `url.Values`: keys sorted when encoded.
#[derive(Clone, Debug, Default)]
pub struct Values(BTreeMap<String, Vec<String>>);

impl Values {
    pub fn new() -> Values {
        Values::default()
    }

    /// Go's `url.ParseQuery`, keeping what parses and dropping the rest.
    pub fn parse(query: &str) -> Values {
        let mut v = Values::new();
        for part in query.split('&') {
            if part.is_empty() || part.contains(';') {
                continue;
            }
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            if let (Ok(k), Ok(val)) = (
                unescape(k, Mode::QueryComponent),
                unescape(val, Mode::QueryComponent),
            ) {
                v.0.entry(k).or_default().push(val);
            }
        }
        v
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.0.insert(k.to_string(), vec![v.to_string()]);
    }

    pub fn add(&mut self, k: &str, v: &str) {
        self.0.entry(k.to_string()).or_default().push(v.to_string());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (k, vs) in &self.0 {
            let key = query_escape(k);
            for v in vs {
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(&key);
                out.push('=');
                out.push_str(&query_escape(v));
            }
        }
        out
    }
}

/// Go's `url.URL`, the fields etcd's client reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    /// User name and optional password, unescaped.
    pub user: Option<(String, Option<String>)>,
    pub host: String,
    pub path: String,
    pub raw_path: String,
    pub force_query: bool,
    pub raw_query: String,
    pub fragment: String,
    pub raw_fragment: String,
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_encoded(s: &str, mode: Mode) -> bool {
    s.bytes().all(|c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape(c, mode)
    })
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    })
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                gofmt::quote(colon_port)
            ));
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                gofmt::quote(colon_port)
            ));
        }
    }
    unescape(host, Mode::Host)
}

type Userinfo = Option<(String, Option<String>)>;

fn parse_authority(authority: &str) -> Result<(Userinfo, String), String> {
    let Some(i) = authority.rfind('@') else {
        return Ok((None, parse_host(authority)?));
    };
    let host = parse_host(&authority[i + 1..])?;
    let userinfo = &authority[..i];
    if !valid_userinfo(userinfo) {
        return Err("net/url: invalid userinfo".to_string());
    }
    let user = match userinfo.split_once(':') {
        None => (unescape(userinfo, Mode::UserPassword)?, None),
        Some((u, p)) => (
            unescape(u, Mode::UserPassword)?,
            Some(unescape(p, Mode::UserPassword)?),
        ),
    };
    Ok((Some(user), host))
}

fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".to_string());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

impl GoUrl {
    /// Go's `url.Parse`, with its error text (`parse "x": ...`).
    pub fn parse(raw: &str) -> Result<GoUrl, String> {
        let (u, frag) = match raw.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (raw, None),
        };
        let mut url = Self::parse_main(u).map_err(|e| format!("parse {}: {e}", gofmt::quote(u)))?;
        if let Some(f) = frag {
            url.fragment = unescape(f, Mode::Fragment)
                .map_err(|e| format!("parse {}: {e}", gofmt::quote(raw)))?;
            if escape(&url.fragment, Mode::Fragment) != f {
                url.raw_fragment = f.to_string();
            }
        }
        Ok(url)
    }

    fn parse_main(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".to_string());
        }
        let mut url = GoUrl::default();
        if raw == "*" {
            url.path = "*".to_string();
            return Ok(url);
        }
        let (scheme, rest) = get_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        let mut rest = rest.to_string();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest.pop();
        } else if let Some((r, q)) = rest.clone().split_once('?') {
            rest = r.to_string();
            url.raw_query = q.to_string();
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                url.opaque = rest;
                return Ok(url);
            }
            let segment = rest.split('/').next().unwrap_or("");
            if segment.contains(':') {
                return Err("first path segment in URL cannot contain colon".to_string());
            }
        }
        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let tail = &rest[2..];
            let (authority, path) = match tail.find('/') {
                Some(i) => (&tail[..i], &tail[i..]),
                None => (tail, ""),
            };
            let (user, host) = parse_authority(authority)?;
            url.user = user;
            url.host = host;
            rest = path.to_string();
        }
        url.path = unescape(&rest, Mode::Path)?;
        if escape(&url.path, Mode::Path) != rest {
            url.raw_path = rest;
        }
        Ok(url)
    }

    /// Go's `URL.EscapedPath`.
    pub fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded(&self.raw_path, Mode::Path)
            && unescape(&self.raw_path, Mode::Path).is_ok_and(|p| p == self.path)
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".to_string();
        }
        escape(&self.path, Mode::Path)
    }

    fn escaped_fragment(&self) -> String {
        if !self.raw_fragment.is_empty()
            && valid_encoded(&self.raw_fragment, Mode::Fragment)
            && unescape(&self.raw_fragment, Mode::Fragment).is_ok_and(|f| f == self.fragment)
        {
            return self.raw_fragment.clone();
        }
        escape(&self.fragment, Mode::Fragment)
    }

    /// Go's `URL.RequestURI`: what goes on the request line.
    pub fn request_uri(&self) -> String {
        let mut result = if self.opaque.is_empty() {
            let p = self.escaped_path();
            if p.is_empty() { "/".to_string() } else { p }
        } else if self.opaque.starts_with("//") {
            format!("{}:{}", self.scheme, self.opaque)
        } else {
            self.opaque.clone()
        };
        if self.force_query || !self.raw_query.is_empty() {
            result.push('?');
            result.push_str(&self.raw_query);
        }
        result
    }

    /// Go's `URL.Query`.
    pub fn query(&self) -> Values {
        Values::parse(&self.raw_query)
    }

    /// The host without its port (Go's `URL.Hostname`).
    pub fn hostname(&self) -> &str {
        let host = self.host.as_str();
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or("");
        }
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    }

    /// The port, empty when none (Go's `URL.Port`).
    pub fn port(&self) -> &str {
        let host = self.host.as_str();
        let after = match host.rfind(']') {
            Some(i) if host.starts_with('[') => &host[i + 1..],
            _ => host,
        };
        match after.rfind(':') {
            Some(i) => &after[i + 1..],
            None => "",
        }
    }
}

impl std::fmt::Display for GoUrl {
    /// Go's `URL.String`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = String::new();
        if !self.scheme.is_empty() {
            buf.push_str(&self.scheme);
            buf.push(':');
        }
        if !self.opaque.is_empty() {
            buf.push_str(&self.opaque);
        } else {
            if !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some() {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.push_str("//");
                }
                if let Some((user, pass)) = &self.user {
                    buf.push_str(&escape(user, Mode::UserPassword));
                    if let Some(p) = pass {
                        buf.push(':');
                        buf.push_str(&escape(p, Mode::UserPassword));
                    }
                    buf.push('@');
                }
                if !self.host.is_empty() {
                    buf.push_str(&escape(&self.host, Mode::Host));
                }
            }
            let path = self.escaped_path();
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                buf.push('/');
            }
            if buf.is_empty() && path.split('/').next().unwrap_or("").contains(':') {
                buf.push_str("./");
            }
            buf.push_str(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            buf.push('?');
            buf.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            buf.push('#');
            buf.push_str(&self.escaped_fragment());
        }
        f.write_str(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("//v2/keys/foo", "/v2/keys/foo"),
            ("/v2/keys/../../x", "/x"),
            ("a/./b/../c/", "a/c"),
            ("../..", "../.."),
            ("/..", "/"),
            ("/a//b///", "/a/b"),
            ("/v2/keys/x/../z", "/v2/keys/z"),
            ("a/../../b", "../b"),
            ("/a/..", "/"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
        assert_eq!(join(&["", "/v2/members"]), "/v2/members");
        assert_eq!(
            join(&["/prefix", "/v2/auth", "users", "a/../b"]),
            "/prefix/v2/auth/users/b"
        );
        assert_eq!(join(&["", ""]), "");
        assert_eq!(canonical_url_path("x/"), "/x/");
        assert_eq!(canonical_url_path("/x*"), "/x*");
    }

    #[test]
    fn escapes_paths_and_queries_like_go() {
        let u = GoUrl {
            scheme: "http".into(),
            host: "127.0.0.1:2379".into(),
            path: "/v2/keys/a b?c#d/%2F/$&+,:;=@!'()*~".into(),
            ..GoUrl::default()
        };
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:2379/v2/keys/a%20b%3Fc%23d/%252F/$&+,:;=@%21%27%28%29%2A~"
        );
        let mut v = Values::new();
        v.set("value", "a b&c=d/é");
        v.set("prevExist", "false");
        assert_eq!(v.encode(), "prevExist=false&value=a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn parses_endpoints_like_go() {
        assert_eq!(
            GoUrl::parse("127.0.0.1:2379").unwrap_err(),
            "parse \"127.0.0.1:2379\": first path segment in URL cannot contain colon"
        );
        let u = GoUrl::parse("localhost:2379").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.opaque.as_str()),
            ("localhost", "2379")
        );
        assert_eq!(u.to_string(), "localhost:2379");
        let mut u = GoUrl::parse("foo").unwrap();
        u.scheme = "http".into();
        assert_eq!(u.to_string(), "http://foo");
        let u = GoUrl::parse("http://u:p@[::1]:2379/x?y=1#f").unwrap();
        assert_eq!(u.host, "[::1]:2379");
        assert_eq!(u.hostname(), "::1");
        assert_eq!(u.port(), "2379");
        assert_eq!(u.to_string(), "http://u:p@[::1]:2379/x?y=1#f");
        assert!(
            GoUrl::parse("http://h:x/")
                .unwrap_err()
                .contains("invalid port \":x\" after host")
        );
        assert!(
            GoUrl::parse(":x")
                .unwrap_err()
                .contains("missing protocol scheme")
        );
        assert!(
            GoUrl::parse("http://a/%zz")
                .unwrap_err()
                .contains("invalid URL escape \"%zz\"")
        );
    }
}
