//! Request parameters as Go's `Request.ParseForm` reads them for etcd's v2 handlers: the
//! URL-encoded body of a PUT or POST first, then the query string; `+` is a space; a bad
//! `%` escape is an error naming it.

/// The most a form body may hold (Go's 10 MB).
pub const FORM_BYTES_MAX: usize = 10 << 20;

#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses the query and, for PUT/POST with a form content type, the body. Returns the
    /// form and the first error met (Go still keeps what parsed).
    pub fn parse(query: Option<&str>, body: Option<&[u8]>) -> (Form, Option<String>) {
        let mut form = Form::default();
        let mut first_error = None;
        if let Some(body) = body {
            let body = String::from_utf8_lossy(body);
            if let Err(e) = form.add_encoded(&body) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(query) = query
            && let Err(e) = form.add_encoded(query)
        {
            first_error.get_or_insert(e);
        }
        (form, first_error)
    }

    fn add_encoded(&mut self, encoded: &str) -> Result<(), String> {
        let mut error = None;
        for pair in encoded.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (unescape(key), unescape(value)) {
                (Ok(k), Ok(v)) => self.pairs.push((k, v)),
                (Err(e), _) | (_, Err(e)) => {
                    error.get_or_insert(e);
                }
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Whether the parameter was given at all (even empty).
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// The first value of `key` (`FormValue`: empty when absent).
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `strconv.ParseBool` of the first value; `Ok(false)` when absent.
    pub fn bool(&self, key: &str) -> Result<bool, ()> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v),
        }
    }

    /// Go's `strconv.ParseUint(v, 10, 64)` of the first value; `Ok(0)` when absent.
    pub fn uint(&self, key: &str) -> Result<u64, ()> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => parse_uint(v),
        }
    }
}

pub fn parse_bool(v: &str) -> Result<bool, ()> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(()),
    }
}

pub fn parse_uint(v: &str) -> Result<u64, ()> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    v.parse().map_err(|_| ())
}

/// Go's `url.QueryUnescape`.
fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                        out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                        i += 3;
                    }
                    _ => {
                        let end = (i + 3).min(bytes.len());
                        let shown = String::from_utf8_lossy(&bytes[i..end]);
                        return Err(format!("invalid URL escape \"{shown}\""));
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_first_then_query_with_gos_decoding() {
        let (form, err) = Form::parse(Some("value=q&ttl=5"), Some(b"value=a+b%21&dir"));
        assert!(err.is_none());
        assert_eq!(form.value("value"), "a b!");
        assert_eq!(form.value("ttl"), "5");
        assert!(form.has("dir"));
        assert_eq!(form.value("dir"), "");
        assert_eq!(form.uint("ttl"), Ok(5));
        assert_eq!(form.uint("none"), Ok(0));
        assert_eq!(form.bool("none"), Ok(false));
    }

    #[test]
    fn bad_escapes_and_numbers_are_errors() {
        let (_, err) = Form::parse(Some("a=%zz"), None);
        assert_eq!(err.as_deref(), Some("invalid URL escape \"%zz\""));
        let (_, err) = Form::parse(Some("a=%4"), None);
        assert_eq!(err.as_deref(), Some("invalid URL escape \"%4\""));
        assert_eq!(parse_uint("abc"), Err(()));
        assert_eq!(parse_uint("-1"), Err(()));
        assert_eq!(parse_uint("+1"), Err(()));
        assert_eq!(parse_uint("18446744073709551616"), Err(()));
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("yes"), Err(()));
    }
}
