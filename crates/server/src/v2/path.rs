//! v2 key paths as etcd handles them: rooted and cleaned with Go's `path.Clean` rules.

/// `path.Clean(path.Join("/", p))`: rooted, no empty, `.` or `..` components, no trailing
/// slash (but `/` itself).
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut out = String::with_capacity(p.len() + 1);
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `path.Join(base, p)` for a rooted, clean `base`.
pub fn join(base: &str, p: &str) -> String {
    clean(&format!("{base}/{p}"))
}

/// The parent directory of a clean path and its last component (`/a/b` → `/a`, `b`).
pub fn split(clean_path: &str) -> (&str, &str) {
    match clean_path.rfind('/') {
        Some(0) => ("/", &clean_path[1..]),
        Some(i) => (&clean_path[..i], &clean_path[i + 1..]),
        None => ("/", clean_path),
    }
}

/// The components of a clean path (none for `/`).
pub fn components(clean_path: &str) -> impl Iterator<Item = &str> {
    clean_path.split('/').filter(|c| !c.is_empty())
}

/// Whether a name is hidden from listings (`_` first).
pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_as_go() {
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("foo", "/foo"),
            ("/foo/", "/foo"),
            ("//a//b/./c/..", "/a/b"),
            ("/../..", "/"),
            ("/a/../../b", "/b"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
        assert_eq!(join("/1", "/foo/"), "/1/foo");
        assert_eq!(join("/1", ""), "/1");
        assert_eq!(join("/1", "../x"), "/x");
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(components("/a/b").collect::<Vec<_>>(), ["a", "b"]);
    }
}
