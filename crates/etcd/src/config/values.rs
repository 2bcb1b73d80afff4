//! Scalar parsers that accept exactly what etcd's Go code accepts, so a value that works with etcd
//! works here: Go's `strconv` integers (base prefixes, `_` separators), `strconv.ParseBool`,
//! `time.ParseDuration`, etcd's URL rules (`pkg/types.NewURLs`), and Go's `%q` quoting for error
//! messages. Pure functions; no I/O.

use std::time::Duration;

use url::Url;

/// Why a Go integer did not parse; Go's `flag` package reports these as "parse error" and
/// "value out of range".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    Syntax,
    Range,
}

impl NumError {
    /// The reason Go's `flag` package gives (`invalid value "x" for flag -f: <reason>`).
    pub(crate) fn flag_reason(self) -> &'static str {
        match self {
            NumError::Syntax => "parse error",
            NumError::Range => "value out of range",
        }
    }

    /// The reason `strconv.ParseUint` gives, used by etcd's own `uint32` flag type.
    pub(crate) fn strconv_reason(self, input: &str) -> String {
        let why = match self {
            NumError::Syntax => "invalid syntax",
            NumError::Range => "value out of range",
        };
        format!("strconv.ParseUint: parsing {}: {why}", go_quote(input))
    }
}

/// `strconv.ParseUint(s, 0, bits)`: decimal, `0x`/`0o`/`0b` prefixes, a leading `0` for octal,
/// and `_` between digits.
pub(crate) fn parse_go_uint(s: &str, bits: u32) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let bytes = s.as_bytes();
    let (base, digits): (u64, &[u8]) = if bytes[0] == b'0' {
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &bytes[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &bytes[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &bytes[2..]),
            _ => (8, &bytes[1..]),
        }
    } else {
        (10, bytes)
    };
    let max: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            c if c.is_ascii_alphabetic() => u64::from(c.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(NumError::Syntax),
        };
        if d >= base {
            return Err(NumError::Syntax);
        }
        // Go reports overflow as soon as it happens, before looking at later characters.
        n = n
            .checked_mul(base)
            .and_then(|n| n.checked_add(d))
            .filter(|&n| n <= max)
            .ok_or(NumError::Range)?;
    }
    if underscores && !underscore_ok(s) {
        return Err(NumError::Syntax);
    }
    Ok(n)
}

/// `strconv.ParseInt(s, 0, bits)`: like [`parse_go_uint`] with an optional sign.
pub(crate) fn parse_go_int(s: &str, bits: u32) -> Result<i64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let (neg, rest) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = match parse_go_uint(rest, bits) {
        Ok(un) => un,
        Err(NumError::Syntax) => return Err(NumError::Syntax),
        Err(NumError::Range) => return Err(NumError::Range),
    };
    let cutoff: u64 = 1u64 << (bits.clamp(1, 64) - 1);
    if !neg && un >= cutoff {
        return Err(NumError::Range);
    }
    if neg && un > cutoff {
        return Err(NumError::Range);
    }
    if neg {
        // un <= cutoff <= 2^63, so this never overflows.
        Ok((un as i128).wrapping_neg() as i64)
    } else {
        Ok(un as i64)
    }
}

/// Go's rule for `_` in base-0 literals: only between digits, or between a base prefix and a
/// digit.
fn underscore_ok(s: &str) -> bool {
    let mut s = s.as_bytes();
    if let Some(b'-' | b'+') = s.first() {
        s = &s[1..];
    }
    // '^' start, '0' digit or base prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The booleans YAML 1.1 (Go's `gopkg.in/yaml.v2`, which etcd uses) recognises in a plain
/// scalar; serde_yaml follows YAML 1.2 and hands them to us as strings.
pub(crate) fn parse_yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// Why a duration did not parse; the text is Go's `time.ParseDuration` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Go rejects it too; the message is Go's.
    Invalid(String),
    /// Go accepts negative durations; none of etcd's duration settings means anything negative,
    /// so we refuse them rather than guess.
    Negative,
}

impl DurationError {
    pub(crate) fn message(&self) -> String {
        match self {
            DurationError::Invalid(m) => m.clone(),
            DurationError::Negative => "negative durations are not allowed".to_string(),
        }
    }
}

/// `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units ns, us, µs, ms, s, m, h; a
/// bare `0` is allowed. Negative results are refused (see [`DurationError::Negative`]).
pub(crate) fn parse_go_duration(orig: &str) -> Result<Duration, DurationError> {
    const MAX: u64 = 1 << 63;
    let invalid = || DurationError::Invalid(format!("time: invalid duration {}", go_quote(orig)));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let mut v: u64 = 0;
        let mut i = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            if v > MAX / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(s[i] - b'0');
            if v > MAX {
                return Err(invalid());
            }
            i += 1;
        }
        let pre = i > 0;
        s = &s[i..];
        // Fraction.
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(b'.') = s.first() {
            s = &s[1..];
            let mut i = 0;
            let mut overflow = false;
            while i < s.len() && s[i].is_ascii_digit() {
                let d = u64::from(s[i] - b'0');
                i += 1;
                if overflow {
                    continue;
                }
                if f > (MAX - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + d;
                if y > MAX {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = i > 0;
            s = &s[i..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::Invalid(format!(
                "time: missing unit in duration {}",
                go_quote(orig)
            )));
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_bytes {
            b"ns" => 1,
            // "us", "µs" (micro sign), "μs" (Greek mu).
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => {
                let u = String::from_utf8_lossy(unit_bytes);
                return Err(DurationError::Invalid(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(&u),
                    go_quote(orig)
                )));
            }
        };
        if v > MAX / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // As Go does: float64 is exact enough for fractions of the largest unit (hours).
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > MAX {
                return Err(invalid());
            }
        }
        total += v;
        if total > MAX {
            return Err(invalid());
        }
    }
    if neg && total > 0 {
        return Err(DurationError::Negative);
    }
    if total > MAX - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// Go's `strconv.Quote`: double quotes, backslash escapes, and `\x`/`\u` escapes for anything
/// unprintable, so a quoted value never spans lines.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unprintable(c) => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Characters that would break a one-line message or display badly: controls, line and paragraph
/// separators, and other non-space whitespace.
fn is_unprintable(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}'
}

/// Makes text that embeds user input safe for a one-line message without quoting it: every
/// character [`go_quote`] would escape is escaped the same way.
pub(crate) fn one_line(s: &str) -> String {
    if !s
        .chars()
        .any(|c| (c as u32) < 0x20 || c as u32 == 0x7f || is_unprintable(c))
    {
        return s.to_string();
    }
    let quoted = go_quote(s);
    // Drop the surrounding quotes but keep the escapes; unescape the quote characters again
    // since they are harmless inside a line.
    quoted[1..quoted.len() - 1]
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

/// Parses one URL by etcd's rules (`pkg/types.NewURLs`): scheme http, https, unix or unixs; an
/// explicit `host:port`; no path. The error text is etcd's.
pub(crate) fn parse_url(input: &str) -> Result<Url, String> {
    let s = input.trim();
    let parse_err = |why: &str| format!("parse {}: {why}", go_quote(s));
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(parse_err("net/url: invalid control character in URL"));
    }
    let scheme_err = || format!("URL scheme must be http, https, unix, or unixs: {s}");
    // Go's getScheme: letters, then letters/digits/+-. up to ':'.
    let Some(colon) = s.find(':') else {
        return Err(scheme_err());
    };
    let scheme = &s[..colon];
    let scheme_ok = !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(if colon == 0 {
            parse_err("missing protocol scheme")
        } else {
            scheme_err()
        });
    }
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "unix" | "unixs"
    ) {
        return Err(scheme_err());
    }
    let rest = &s[colon + 1..];
    let hostport_err = || format!("URL address does not have the form \"host:port\": {s}");
    // Without "//" Go parses an opaque URL with an empty host.
    let Some(after) = rest.strip_prefix("//") else {
        return Err(hostport_err());
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if split_host_port(host_port).is_err() {
        return Err(hostport_err());
    }
    if after[authority_end..].starts_with('/') {
        return Err(format!("URL must not contain a path: {s}"));
    }
    Url::parse(s).map_err(|e| parse_err(&e.to_string()))
}

/// Go's `net.SplitHostPort` validity check: `host:port` or `[v6]:port`, port may be empty.
fn split_host_port(hp: &str) -> Result<(&str, &str), ()> {
    let i = hp.rfind(':').ok_or(())?;
    let host;
    if let Some(bracketed) = hp.strip_prefix('[') {
        let end = bracketed.find(']').ok_or(())? + 1;
        if end + 1 != i {
            return Err(());
        }
        host = &hp[1..end];
        if bracketed.contains('[') || hp[end + 1..].contains(']') {
            return Err(());
        }
    } else {
        host = &hp[..i];
        if host.contains(':') || host.contains('[') || host.contains(']') {
            return Err(());
        }
    }
    let port = &hp[i + 1..];
    if port.contains('[') || port.contains(']') {
        return Err(());
    }
    Ok((host, port))
}

/// Parses a comma-separated URL list as etcd does: each element trimmed and checked, then the
/// list sorted by URL string.
pub(crate) fn parse_url_list(s: &str) -> Result<Vec<Url>, String> {
    let mut urls = s.split(',').map(parse_url).collect::<Result<Vec<_>, _>>()?;
    urls.sort_by_cached_key(go_url_string);
    Ok(urls)
}

/// The URL as Go's `url.URL.String()` prints it for the URLs etcd accepts (`scheme://host:port`,
/// no trailing `/`). etcd derives member IDs and `--initial-cluster` strings from this form, so
/// use it, not `Url`'s own `Display` (which adds `/` and drops default ports), whenever a URL is
/// compared with or sent to etcd.
pub fn go_url_string(u: &Url) -> String {
    let mut out = format!("{}://", u.scheme());
    if !u.username().is_empty() || u.password().is_some() {
        out.push_str(u.username());
        if let Some(p) = u.password() {
            out.push(':');
            out.push_str(p);
        }
        out.push('@');
    }
    out.push_str(u.host_str().unwrap_or(""));
    // etcd requires an explicit port, so one was written even if `Url` dropped it as default.
    out.push(':');
    if let Some(port) = u.port_or_known_default() {
        out.push_str(&port.to_string());
    }
    if u.path() != "/" {
        out.push_str(u.path());
    }
    if let Some(q) = u.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = u.fragment() {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_uint_accepts_go_literals() {
        assert_eq!(parse_go_uint("100", 64), Ok(100));
        assert_eq!(parse_go_uint("0x10", 64), Ok(16));
        assert_eq!(parse_go_uint("0X1f", 64), Ok(31));
        assert_eq!(parse_go_uint("0o17", 64), Ok(15));
        assert_eq!(parse_go_uint("017", 64), Ok(15));
        assert_eq!(parse_go_uint("0b101", 64), Ok(5));
        assert_eq!(parse_go_uint("1_000", 64), Ok(1000));
        assert_eq!(parse_go_uint("0x_1f", 64), Ok(31));
        assert_eq!(parse_go_uint("0", 64), Ok(0));
        assert_eq!(parse_go_uint("4294967295", 32), Ok(u64::from(u32::MAX)));
    }

    #[test]
    fn go_uint_rejects_what_go_rejects() {
        for bad in [
            "", "abc", "-1", "+1", "08", "0x", "1__0", "_1", "1_", "1.5", " 1",
        ] {
            assert_eq!(parse_go_uint(bad, 64), Err(NumError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_go_uint("4294967296", 32), Err(NumError::Range));
        assert_eq!(
            parse_go_uint("99999999999999999999", 64),
            Err(NumError::Range)
        );
    }

    #[test]
    fn go_int_handles_signs_and_bounds() {
        assert_eq!(parse_go_int("-5", 64), Ok(-5));
        assert_eq!(parse_go_int("+5", 64), Ok(5));
        assert_eq!(parse_go_int("-0x10", 64), Ok(-16));
        assert_eq!(parse_go_int("9223372036854775807", 64), Ok(i64::MAX));
        assert_eq!(parse_go_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("9223372036854775808", 64),
            Err(NumError::Range)
        );
        assert_eq!(parse_go_int("--5", 64), Err(NumError::Syntax));
        assert_eq!(parse_go_int("-", 64), Err(NumError::Syntax));
    }

    #[test]
    fn go_bool() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_yaml11_bool("yes"), Some(true));
        assert_eq!(parse_yaml11_bool("Off"), Some(false));
    }

    #[test]
    fn go_duration() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(ok("100ms"), Duration::from_millis(100));
        assert_eq!(ok("1.5us"), Duration::from_nanos(1500));
        assert_eq!(ok("3µs"), Duration::from_micros(3));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("+1m"), Duration::from_secs(60));
        assert_eq!(
            parse_go_duration("5"),
            Err(DurationError::Invalid(
                "time: missing unit in duration \"5\"".into()
            ))
        );
        assert_eq!(
            parse_go_duration("5x"),
            Err(DurationError::Invalid(
                "time: unknown unit \"x\" in duration \"5x\"".into()
            ))
        );
        for bad in ["", "s", ".s", "-", "1s-", "abc", "9999999999h", "1e3s"] {
            assert!(
                matches!(parse_go_duration(bad), Err(DurationError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
    }

    #[test]
    fn quoting_is_one_line() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\x00"), r#""a\nb\x00""#);
        assert_eq!(go_quote("é"), "\"é\"");
        assert_eq!(go_quote("\u{2028}"), r#""\u2028""#);
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(one_line("a\nb \"q\""), r#"a\nb "q""#);
        assert_eq!(
            go_quote_list(&["a".to_string(), "b".to_string()]),
            r#"["a" "b"]"#
        );
    }

    #[test]
    fn urls_follow_etcd_rules() {
        let u = parse_url(" http://127.0.0.1:2379 ").unwrap();
        assert_eq!(go_url_string(&u), "http://127.0.0.1:2379");
        let u = parse_url("https://[::1]:2380").unwrap();
        assert_eq!(go_url_string(&u), "https://[::1]:2380");
        let u = parse_url("http://example.com:80").unwrap();
        assert_eq!(go_url_string(&u), "http://example.com:80");
        let u = parse_url("unix://localhost:12345").unwrap();
        assert_eq!(go_url_string(&u), "unix://localhost:12345");
        assert_eq!(
            parse_url("foo://x:1").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: foo://x:1"
        );
        assert_eq!(
            parse_url("localhost:2379").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: localhost:2379"
        );
        assert_eq!(
            parse_url("http://x:1/path").unwrap_err(),
            "URL must not contain a path: http://x:1/path"
        );
        assert_eq!(
            parse_url("http://x:1/").unwrap_err(),
            "URL must not contain a path: http://x:1/"
        );
        assert_eq!(
            parse_url("http://x").unwrap_err(),
            "URL address does not have the form \"host:port\": http://x"
        );
        assert_eq!(
            parse_url("http:x:1").unwrap_err(),
            "URL address does not have the form \"host:port\": http:x:1"
        );
        assert_eq!(
            parse_url("").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: "
        );
        assert!(
            parse_url("http://%zz:1")
                .unwrap_err()
                .starts_with("parse \"http://%zz:1\": ")
        );
        assert!(
            parse_url("http://a\nb:1")
                .unwrap_err()
                .contains("control character")
        );
        let list = parse_url_list("http://b:1, http://a:1").unwrap();
        let strs: Vec<String> = list.iter().map(go_url_string).collect();
        assert_eq!(strs, ["http://a:1", "http://b:1"]);
    }
}
