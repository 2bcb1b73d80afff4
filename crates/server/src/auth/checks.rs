//! Which permissions a request needs, as etcd 3.4's auth applier decides, plus nested
//! transactions (which etcd 3.4 forgets to check): reads need read permission on their range,
//! writes write permission (and read permission when they return the previous values),
//! compares read permission, a lease's revocation write permission on its keys, and attaching
//! a lease to a key write permission on the keys already attached to it.

use etcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

use super::error::AuthError;
use super::store::AuthStore;

/// Who asks, as of which auth revision.
pub struct Asker<'a> {
    pub store: &'a AuthStore,
    pub user: &'a str,
    pub revision: u64,
}

impl Asker<'_> {
    fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.store
            .check_range(self.user, self.revision, key, range_end, false)
    }

    fn write(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.store
            .check_range(self.user, self.revision, key, range_end, true)
    }

    pub fn admin(&self) -> Result<(), AuthError> {
        self.store.check_admin(self.user, self.revision)
    }

    pub fn range(&self, r: &RangeRequest) -> Result<(), AuthError> {
        self.read(&r.key, &r.range_end)
    }

    /// A put; `lease_keys` gives the keys already attached to a lease.
    pub fn put(
        &self,
        r: &PutRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        self.write(&r.key, &[])?;
        if r.lease != 0 {
            // Attaching a lease whose keys the user may not write would let it revoke them.
            for key in lease_keys(r.lease) {
                self.write(&key, &[])?;
            }
        }
        if r.prev_kv {
            self.read(&r.key, &[])?;
        }
        Ok(())
    }

    pub fn delete_range(&self, r: &DeleteRangeRequest) -> Result<(), AuthError> {
        if r.prev_kv {
            self.read(&r.key, &r.range_end)?;
        }
        self.write(&r.key, &r.range_end)
    }

    pub fn txn(
        &self,
        r: &TxnRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        for c in &r.compare {
            self.read(&c.key, &c.range_end)?;
        }
        for op in r.success.iter().chain(&r.failure) {
            self.op(op, lease_keys)?;
        }
        Ok(())
    }

    fn op(
        &self,
        op: &RequestOp,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => self.range(r),
            Some(request_op::Request::RequestPut(r)) => self.put(r, lease_keys),
            Some(request_op::Request::RequestDeleteRange(r)) => self.delete_range(r),
            Some(request_op::Request::RequestTxn(r)) => self.txn(r, lease_keys),
            None => Ok(()),
        }
    }

    /// The keys under `prefix` (`<prefix>/…`, as Lock and Election name their keys), for
    /// reading or writing: those services act on them in the caller's name.
    pub fn prefix(&self, prefix: &[u8], write: bool) -> Result<(), AuthError> {
        let mut start = prefix.to_vec();
        start.push(b'/');
        let mut end = prefix.to_vec();
        end.push(b'/' + 1);
        if write {
            self.write(&start, &end)
        } else {
            self.read(&start, &end)
        }
    }

    /// Deleting one key (unlock, resign, proclaim over a leader key).
    pub fn delete_key(&self, key: &[u8]) -> Result<(), AuthError> {
        self.write(key, &[])
    }

    /// Revoking a lease deletes its keys: write permission on each.
    pub fn lease_revoke(&self, keys: &[Vec<u8>]) -> Result<(), AuthError> {
        for key in keys {
            self.write(key, &[])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::authpb::{Permission, permission::Type as PermType};
    use etcd_api::etcdserverpb::Compare;

    fn store() -> AuthStore {
        let mut s = AuthStore::default();
        s.user_add("root", Some("h"), false).unwrap();
        s.user_grant_role("root", "root").unwrap();
        s.user_add("u", Some("h"), false).unwrap();
        s.role_add("r").unwrap();
        for (kind, key, end) in [(PermType::Readwrite, "a", "b"), (PermType::Read, "c", "")] {
            s.role_grant_permission(
                "r",
                Permission {
                    perm_type: kind as i32,
                    key: key.into(),
                    range_end: end.into(),
                },
            )
            .unwrap();
        }
        s.user_grant_role("u", "r").unwrap();
        s.enable().unwrap();
        s
    }

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn every_op_and_compare_of_a_txn_is_checked_nested_too() {
        let s = store();
        let asker = Asker {
            store: &s,
            user: "u",
            revision: s.revision(),
        };
        let none = |_| Vec::new();
        let ok = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                ..Default::default()
            }],
            success: vec![put("a1")],
            failure: vec![],
        };
        assert_eq!(asker.txn(&ok, &none), Ok(()));
        let mut bad_compare = ok.clone();
        bad_compare.compare[0].key = b"z".to_vec();
        assert_eq!(
            asker.txn(&bad_compare, &none),
            Err(AuthError::PermissionDenied)
        );
        let mut writes_read_only = ok.clone();
        writes_read_only.failure.push(put("c"));
        assert_eq!(
            asker.txn(&writes_read_only, &none),
            Err(AuthError::PermissionDenied)
        );
        let mut nested = ok.clone();
        nested.success.push(RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                success: vec![put("zz")],
                ..Default::default()
            })),
        });
        assert_eq!(asker.txn(&nested, &none), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn leases_carry_their_keys_permissions() {
        let s = store();
        let asker = Asker {
            store: &s,
            user: "u",
            revision: s.revision(),
        };
        let keys = |_| vec![b"a1".to_vec(), b"zz".to_vec()];
        let req = PutRequest {
            key: b"a2".to_vec(),
            lease: 7,
            ..Default::default()
        };
        assert_eq!(asker.put(&req, &keys), Err(AuthError::PermissionDenied));
        assert_eq!(asker.put(&req, &|_| vec![b"a1".to_vec()]), Ok(()));
        assert_eq!(
            asker.lease_revoke(&keys(7)),
            Err(AuthError::PermissionDenied)
        );
        let prev = DeleteRangeRequest {
            key: b"c".to_vec(),
            prev_kv: true,
            ..Default::default()
        };
        assert_eq!(asker.delete_range(&prev), Err(AuthError::PermissionDenied));
    }
}
