//! Revisions and their on-disk key encoding.
//!
//! A revision is (main, sub): `main` is bumped once per write transaction, `sub` numbers the
//! changes inside it. Records in the `key` table are keyed by the revision in etcd's exact byte
//! layout: 8 bytes big-endian main, `'_'`, 8 bytes big-endian sub, plus a trailing `'t'` on
//! tombstones. Big-endian makes byte order equal revision order, so a table scan is a walk
//! through history; keeping etcd's layout makes `hash_kv` equal to what etcd computes over the
//! same history.

use crate::MvccError;

/// One point in the store's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// Bumped once per write transaction.
    pub main: i64,
    /// Position of the change inside its transaction.
    pub sub: i64,
}

impl Revision {
    /// A revision from its two parts.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }
}

/// Byte length of a plain record key.
pub const REV_KEY_LEN: usize = 17;
/// Marker appended to a tombstone's record key.
const TOMBSTONE_MARK: u8 = b't';
const SEPARATOR: u8 = b'_';

/// The `key` table key of one record: a revision plus the tombstone flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevKey {
    bytes: [u8; REV_KEY_LEN + 1],
    tombstone: bool,
}

impl RevKey {
    /// Encodes `rev`, marked as a tombstone if `tombstone`.
    pub fn new(rev: Revision, tombstone: bool) -> Self {
        let mut bytes = [0u8; REV_KEY_LEN + 1];
        // Revisions are never negative; the cast keeps etcd's uint64 layout.
        bytes[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
        bytes[8] = SEPARATOR;
        bytes[9..17].copy_from_slice(&(rev.sub as u64).to_be_bytes());
        bytes[17] = TOMBSTONE_MARK;
        RevKey { bytes, tombstone }
    }

    /// The smallest key at or after `(main, 0)`; a scan bound.
    pub fn lower_bound(main: i64) -> Self {
        RevKey::new(Revision::new(main, 0), false)
    }

    /// The bytes as stored.
    pub fn as_bytes(&self) -> &[u8] {
        if self.tombstone {
            &self.bytes
        } else {
            &self.bytes[..REV_KEY_LEN]
        }
    }

    /// Decodes a stored key, refusing anything this module does not write.
    pub fn decode(bytes: &[u8]) -> Result<(Revision, bool), MvccError> {
        let tombstone = match bytes.len() {
            REV_KEY_LEN => false,
            n if n == REV_KEY_LEN + 1 && bytes[REV_KEY_LEN] == TOMBSTONE_MARK => true,
            _ => return Err(MvccError::Corrupt(format!("bad record key {bytes:02x?}"))),
        };
        if bytes[8] != SEPARATOR {
            return Err(MvccError::Corrupt(format!("bad record key {bytes:02x?}")));
        }
        let mut main = [0u8; 8];
        let mut sub = [0u8; 8];
        main.copy_from_slice(&bytes[..8]);
        sub.copy_from_slice(&bytes[9..17]);
        let rev = Revision::new(
            u64::from_be_bytes(main) as i64,
            u64::from_be_bytes(sub) as i64,
        );
        if rev.main < 0 || rev.sub < 0 {
            return Err(MvccError::Corrupt(format!(
                "negative revision in key {bytes:02x?}"
            )));
        }
        Ok((rev, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_etcds() {
        let k = RevKey::new(Revision::new(2, 1), false);
        assert_eq!(
            k.as_bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1]
        );
        let t = RevKey::new(Revision::new(2, 1), true);
        assert_eq!(t.as_bytes().len(), 18);
        assert_eq!(t.as_bytes()[17], b't');
    }

    #[test]
    fn round_trips_and_orders() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            let a = RevKey::new(w[0], false);
            let b = RevKey::new(w[1], true);
            assert!(a.as_bytes() < b.as_bytes());
        }
        for (i, r) in revs.iter().enumerate() {
            let tomb = i % 2 == 0;
            let k = RevKey::new(*r, tomb);
            assert_eq!(RevKey::decode(k.as_bytes()).unwrap(), (*r, tomb));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(RevKey::decode(b"short").is_err());
        let mut k = RevKey::new(Revision::new(3, 0), true).as_bytes().to_vec();
        k[17] = b'x';
        assert!(RevKey::decode(&k).is_err());
        k[17] = b't';
        k[8] = b'-';
        assert!(RevKey::decode(&k).is_err());
        let neg = RevKey::new(Revision::new(-1, 0), false);
        assert!(RevKey::decode(neg.as_bytes()).is_err());
    }
}
