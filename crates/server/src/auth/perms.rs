//! Key-range permissions: a user's grants from all its roles merged into disjoint ranges, one
//! set for reads and one for writes, and the coverage checks etcd makes against them.
//!
//! A permission is a point (`range_end` empty: just `key`), a range `[key, range_end)`, or
//! everything from `key` on (`range_end` = `"\0"`, etcd's "from key"). A request is allowed
//! when the ranges cover all of it: one key, `[key, range_end)`, or `[key, ∞)`.

use etcd_api::authpb::{Permission, permission::Type as PermType};

/// The end of a range: exclusive, or unbounded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Before(Vec<u8>),
    Unbounded,
}

/// Disjoint, sorted, merged `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(Vec<u8>, End)>,
}

/// What a request covers, in etcd's encoding (`range_end` empty: one key; `"\0"`: from key).
fn span(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    match range_end {
        [] => {
            // The single key `key` is `[key, key + "\0")`.
            let mut next = key.to_vec();
            next.push(0);
            (key.to_vec(), End::Before(next))
        }
        [0] => (key.to_vec(), End::Unbounded),
        end => (key.to_vec(), End::Before(end.to_vec())),
    }
}

impl RangeSet {
    fn from_spans(mut spans: Vec<(Vec<u8>, End)>) -> RangeSet {
        // An empty or backwards range covers nothing.
        spans.retain(|(start, end)| match end {
            End::Before(e) => start < e,
            End::Unbounded => true,
        });
        spans.sort();
        let mut ranges: Vec<(Vec<u8>, End)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            if let Some(last) = ranges.last_mut() {
                let touches = match &last.1 {
                    End::Unbounded => true,
                    End::Before(e) => start <= *e,
                };
                if touches {
                    if end > last.1 {
                        last.1 = end;
                    }
                    continue;
                }
            }
            ranges.push((start, end));
        }
        RangeSet { ranges }
    }

    /// Whether these ranges cover all of the request `(key, range_end)`.
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let (start, end) = span(key, range_end);
        if let End::Before(e) = &end
            && start >= *e
        {
            // etcd's check of an empty range: nothing to deny, but nothing granted either
            // unless the start itself is covered.
            return self.covers(key, &[]);
        }
        // The one range that could hold `start`: the last one starting at or before it.
        let i = self
            .ranges
            .partition_point(|(s, _)| s.as_slice() <= start.as_slice());
        let Some((_, covering_end)) = i.checked_sub(1).map(|i| &self.ranges[i]) else {
            return false;
        };
        match (covering_end, &end) {
            (End::Unbounded, _) => true,
            (End::Before(_), End::Unbounded) => false,
            (End::Before(have), End::Before(want)) => want <= have,
        }
    }
}

/// One user's merged permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPerms {
    pub read: RangeSet,
    pub write: RangeSet,
}

impl UserPerms {
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> UserPerms {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for p in perms {
            let s = span(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type) {
                Ok(PermType::Read) => read.push(s),
                Ok(PermType::Write) => write.push(s),
                Ok(PermType::Readwrite) => {
                    read.push(s.clone());
                    write.push(s);
                }
                // An unknown type grants nothing.
                Err(_) => {}
            }
        }
        UserPerms {
            read: RangeSet::from_spans(read),
            write: RangeSet::from_spans(write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(kind: PermType, key: &str, range_end: &[u8]) -> Permission {
        Permission {
            perm_type: kind as i32,
            key: key.as_bytes().to_vec(),
            range_end: range_end.to_vec(),
        }
    }

    #[test]
    fn a_point_grants_only_its_key() {
        let p = UserPerms::merge(&[perm(PermType::Read, "foo", b"")]);
        assert!(p.read.covers(b"foo", b""));
        assert!(!p.read.covers(b"foo1", b""));
        assert!(!p.read.covers(b"fo", b""));
        assert!(
            !p.read.covers(b"foo", b"fop"),
            "a range is more than its first key"
        );
        assert!(p.read.covers(b"foo", b"foo\0"));
        assert!(!p.write.covers(b"foo", b""));
    }

    #[test]
    fn prefixes_and_from_key_ranges() {
        let p = UserPerms::merge(&[
            perm(PermType::Readwrite, "a", b"b"),
            perm(PermType::Write, "x", &[0]),
        ]);
        assert!(p.read.covers(b"a", b"b"));
        assert!(p.read.covers(b"abc", b""));
        assert!(p.read.covers(b"ab", b"ac"));
        assert!(!p.read.covers(b"a", b"c"));
        assert!(!p.read.covers(b"a", &[0]));
        assert!(p.write.covers(b"x", &[0]));
        assert!(p.write.covers(b"zzz", b""));
        assert!(p.write.covers(b"y", b"z"));
        assert!(!p.write.covers(b"w", &[0]));
        assert!(!p.read.covers(b"x", b""));
    }

    #[test]
    fn ranges_from_several_roles_merge_into_one_cover() {
        let p = UserPerms::merge(&[
            perm(PermType::Read, "a", b"c"),
            perm(PermType::Read, "c", b"e"),
            perm(PermType::Read, "d", b"f"),
        ]);
        assert!(p.read.covers(b"a", b"f"));
        assert!(p.read.covers(b"b", b"e\xff"));
        assert!(!p.read.covers(b"a", b"f\0"));
        let gap = UserPerms::merge(&[
            perm(PermType::Read, "a", b"c"),
            perm(PermType::Read, "d", b"f"),
        ]);
        assert!(!gap.read.covers(b"a", b"f"));
        assert!(!gap.read.covers(b"c", b""));
    }

    #[test]
    fn nothing_granted_covers_nothing() {
        let p = UserPerms::default();
        assert!(!p.read.covers(b"a", b""));
        assert!(!p.write.covers(b"", &[0]));
    }
}
