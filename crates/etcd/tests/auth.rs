//! Auth as etcd 3.4 does it, through the real gRPC API: users and roles, enabling, tokens,
//! permission checks on reads, writes, transactions (nested too), watches and leases, admin
//! checks, the auth revision invalidating old tokens, and the auth state surviving a restart.

mod common;

use common::EtcdProcess;
use etcd_api::authpb::{Permission, permission::Type as PermType};
use etcd_api::etcdserverpb::*;
use etcd_client::Client;
use tokio_stream::StreamExt;

/// A request carrying `token` as etcd's clients send it.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("token", token.parse().expect("a token is ASCII"));
    }
    request
}

async fn authenticate(c: &mut Client, name: &str, password: &str) -> Result<String, tonic::Status> {
    c.auth
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

async fn put(c: &mut Client, token: Option<&str>, key: &str) -> Result<(), tonic::Status> {
    let req = PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    c.kv.put(with_token(req, token)).await.map(|_| ())
}

async fn get(
    c: &mut Client,
    token: Option<&str>,
    key: &str,
    end: &str,
) -> Result<(), tonic::Status> {
    let req = RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    };
    c.kv.range(with_token(req, token)).await.map(|_| ())
}

fn denied(result: Result<(), tonic::Status>) -> String {
    let status = result.expect_err("refused");
    format!("{:?}: {}", status.code(), status.message())
}

const PERMISSION_DENIED: &str = "PermissionDenied: etcdserver: permission denied";

/// root (with the root role), and `u` with role `r`: read-write on `foo`, read on `bar*`.
async fn set_up_users(c: &mut Client) {
    c.auth
        .user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "rootpw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.auth
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .unwrap();
    c.auth
        .user_add(AuthUserAddRequest {
            name: "u".into(),
            password: "upw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.auth
        .role_add(AuthRoleAddRequest { name: "r".into() })
        .await
        .unwrap();
    for (kind, key, end) in [
        (PermType::Readwrite, "foo", ""),
        (PermType::Read, "bar", "bas"),
    ] {
        c.auth
            .role_grant_permission(AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: Some(Permission {
                    perm_type: kind as i32,
                    key: key.into(),
                    range_end: end.into(),
                }),
            })
            .await
            .unwrap();
    }
    c.auth
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "u".into(),
            role: "r".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn permissions_are_checked_on_every_request_once_auth_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let refused = c.auth.auth_enable(AuthEnableRequest {}).await.unwrap_err();
    assert_eq!(refused.message(), "etcdserver: root user does not exist");
    set_up_users(&mut c).await;
    let refused = authenticate(&mut c, "root", "rootpw").await.unwrap_err();
    assert_eq!(
        refused.message(),
        "etcdserver: authentication is not enabled"
    );
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();

    // No token, a bad one, a wrong password.
    assert_eq!(
        denied(put(&mut c, None, "foo").await),
        "InvalidArgument: etcdserver: user name is empty"
    );
    assert_eq!(
        denied(put(&mut c, Some("nonsense.1"), "foo").await),
        "Unauthenticated: etcdserver: invalid auth token"
    );
    for (user, password) in [("u", "wrong"), ("nobody", "upw")] {
        let refused = authenticate(&mut c, user, password).await.unwrap_err();
        assert_eq!(
            refused.message(),
            "etcdserver: authentication failed, invalid user ID or password"
        );
    }

    let u = authenticate(&mut c, "u", "upw").await.unwrap();
    let root = authenticate(&mut c, "root", "rootpw").await.unwrap();
    assert!(put(&mut c, Some(&u), "foo").await.is_ok());
    assert!(get(&mut c, Some(&u), "foo", "").await.is_ok());
    assert!(get(&mut c, Some(&u), "bar", "bas").await.is_ok());
    assert!(get(&mut c, Some(&u), "bar1", "").await.is_ok());
    assert_eq!(
        denied(put(&mut c, Some(&u), "bar1").await),
        PERMISSION_DENIED
    );
    assert_eq!(
        denied(get(&mut c, Some(&u), "bar", "bat").await),
        PERMISSION_DENIED
    );
    assert_eq!(
        denied(get(&mut c, Some(&u), "zzz", "").await),
        PERMISSION_DENIED
    );
    assert!(put(&mut c, Some(&root), "zzz").await.is_ok());

    // Transactions: every compare and op, nested ones too.
    let put_op = |key: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            ..Default::default()
        })),
    };
    let allowed = TxnRequest {
        compare: vec![Compare {
            key: b"bar1".to_vec(),
            ..Default::default()
        }],
        success: vec![put_op("foo")],
        failure: vec![],
    };
    assert!(
        c.kv.txn(with_token(allowed.clone(), Some(&u)))
            .await
            .is_ok()
    );
    let mut nested = allowed.clone();
    nested.failure.push(RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest {
            success: vec![put_op("zzz")],
            ..Default::default()
        })),
    });
    let refused = c.kv.txn(with_token(nested, Some(&u))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // A watch on keys it may not read is created canceled, with etcd's reason.
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"zzz".to_vec(),
                ..Default::default()
            },
        )),
    };
    let mut responses = c
        .watch
        .watch(with_token(tokio_stream::iter(vec![create]), Some(&u)))
        .await
        .unwrap()
        .into_inner();
    let first = responses.next().await.unwrap().unwrap();
    assert!(first.created && first.canceled, "{first:?}");
    assert_eq!(first.cancel_reason, "etcdserver: permission denied");

    // Administration is root's.
    let refused = c
        .auth
        .user_list(with_token(AuthUserListRequest {}, Some(&u)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let users = c
        .auth
        .user_list(with_token(AuthUserListRequest {}, Some(&root)))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users, ["root", "u"]);
    let refused = c
        .maintenance
        .defragment(with_token(DefragmentRequest {}, Some(&u)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = c
        .auth
        .user_revoke_role(with_token(
            AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into(),
            },
            Some(&root),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.message(), "etcdserver: invalid auth management");

    // A revoked permission: the old token is stale at once, a new one is refused.
    c.auth
        .role_revoke_permission(with_token(
            AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: b"foo".to_vec(),
                range_end: Vec::new(),
            },
            Some(&root),
        ))
        .await
        .unwrap();
    assert_eq!(
        denied(put(&mut c, Some(&u), "foo").await),
        "InvalidArgument: etcdserver: revision of auth store is old"
    );
    let u = authenticate(&mut c, "u", "upw").await.unwrap();
    assert_eq!(
        denied(put(&mut c, Some(&u), "foo").await),
        PERMISSION_DENIED
    );

    // Turning auth off lets everyone in again.
    let root = authenticate(&mut c, "root", "rootpw").await.unwrap();
    c.auth
        .auth_disable(with_token(AuthDisableRequest {}, Some(&root)))
        .await
        .unwrap();
    assert!(put(&mut c, None, "zzz").await.is_ok());
}

#[tokio::test]
async fn users_roles_and_the_enabled_flag_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let mut c = etcd.client().await;
    set_up_users(&mut c).await;
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let revision = c
        .auth
        .auth_status(AuthStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .auth_revision;
    etcd.kill();
    etcd.spawn();
    // Readiness is judged by a read, which now needs a user: wait by authenticating.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let token = loop {
        if let Ok(mut c) = etcd.try_client().await
            && let Ok(token) = authenticate(&mut c, "u", "upw").await
        {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "{}", etcd.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut c = etcd.client().await;
    let status = c
        .auth
        .auth_status(AuthStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.enabled);
    assert_eq!(status.auth_revision, revision);
    assert!(put(&mut c, Some(&token), "foo").await.is_ok());
    assert_eq!(
        denied(put(&mut c, Some(&token), "bar1").await),
        PERMISSION_DENIED
    );
}

#[tokio::test]
async fn jwt_tokens_are_issued_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, b"a shared secret for the test's tokens").unwrap();
    let option = format!("jwt,sign-method=HS256,priv-key={},ttl=5m", secret.display());
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &["--auth-token", &option]).await;
    let mut c = etcd.client().await;
    set_up_users(&mut c).await;
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let token = authenticate(&mut c, "u", "upw").await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert!(put(&mut c, Some(&token), "foo").await.is_ok());
    assert_eq!(
        denied(put(&mut c, Some(&token), "bar1").await),
        PERMISSION_DENIED
    );
    let mut tampered = token.clone();
    tampered.push('A');
    assert_eq!(
        denied(put(&mut c, Some(&tampered), "foo").await),
        "Unauthenticated: etcdserver: invalid auth token"
    );
}

/// The token states a request can come with.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// No token while auth is on.
    Nobody,
    /// A token nobody issued (or one that expired: the member no longer knows it).
    Unknown,
    /// `u` with a token from before the last auth change.
    Stale,
    /// `u` (read-write on `foo`, read on `bar*`), current token.
    User,
    /// root, current token.
    Root,
}

/// What each RPC answers for each caller: `None` allowed, `Some(code)` refused with it.
#[tokio::test]
async fn permission_matrix_every_rpc_by_every_kind_of_caller() {
    use tonic::Code;
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let mut c = etcd.client().await;
    set_up_users(&mut c).await;
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let stale = authenticate(&mut c, "u", "upw").await.unwrap();
    let root = authenticate(&mut c, "root", "rootpw").await.unwrap();
    // Any auth change moves the revision: `stale` is now old.
    c.auth
        .role_add(with_token(
            AuthRoleAddRequest {
                name: "other".into(),
            },
            Some(&root),
        ))
        .await
        .unwrap();
    let user = authenticate(&mut c, "u", "upw").await.unwrap();
    let root = authenticate(&mut c, "root", "rootpw").await.unwrap();
    let lease = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;

    let token = |who: Who| -> Option<String> {
        match who {
            Who::Nobody => None,
            Who::Unknown => Some("NoSuchTokenAtAll.42".to_string()),
            Who::Stale => Some(stale.clone()),
            Who::User => Some(user.clone()),
            Who::Root => Some(root.clone()),
        }
    };
    // The codes every refusal of a caller who cannot be trusted gives, whatever the RPC.
    let untrusted = |who: Who| match who {
        Who::Nobody => Some(Code::InvalidArgument),
        Who::Unknown => Some(Code::Unauthenticated),
        Who::Stale => Some(Code::InvalidArgument),
        Who::User | Who::Root => None,
    };
    let user_may = |who: Who, allowed: bool| match who {
        Who::User if !allowed => Some(Code::PermissionDenied),
        Who::User | Who::Root => None,
        other => untrusted(other),
    };
    let admin_only = |who: Who| match who {
        Who::User => Some(Code::PermissionDenied),
        Who::Root => None,
        other => untrusted(other),
    };
    let code = |r: Result<(), tonic::Status>| r.err().map(|s| s.code());

    let mut mismatches = Vec::new();
    for who in [Who::Nobody, Who::Unknown, Who::Stale, Who::User, Who::Root] {
        let t = token(who);
        let t = t.as_deref();
        let checks: Vec<(&str, Option<Code>, Option<Code>)> = vec![
            (
                "range foo",
                code(get(&mut c, t, "foo", "").await),
                user_may(who, true),
            ),
            (
                "range zzz",
                code(get(&mut c, t, "zzz", "").await),
                user_may(who, false),
            ),
            (
                "put foo",
                code(put(&mut c, t, "foo").await),
                user_may(who, true),
            ),
            (
                "put bar1",
                code(put(&mut c, t, "bar1").await),
                user_may(who, false),
            ),
            (
                "delete foo",
                code(
                    c.kv.delete_range(with_token(
                        DeleteRangeRequest {
                            key: b"foo".to_vec(),
                            ..Default::default()
                        },
                        t,
                    ))
                    .await
                    .map(|_| ()),
                ),
                user_may(who, true),
            ),
            (
                "txn on zzz",
                code(
                    c.kv.txn(with_token(
                        TxnRequest {
                            compare: vec![Compare {
                                key: b"zzz".to_vec(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                        t,
                    ))
                    .await
                    .map(|_| ()),
                ),
                user_may(who, false),
            ),
            (
                "put with an empty lease",
                code(
                    c.kv.put(with_token(
                        PutRequest {
                            key: b"foo".to_vec(),
                            lease,
                            ..Default::default()
                        },
                        t,
                    ))
                    .await
                    .map(|_| ()),
                ),
                user_may(who, true),
            ),
            (
                "defragment",
                code(
                    c.maintenance
                        .defragment(with_token(DefragmentRequest {}, t))
                        .await
                        .map(|_| ()),
                ),
                admin_only(who),
            ),
            (
                "hash kv",
                code(
                    c.maintenance
                        .hash_kv(with_token(HashKvRequest { revision: 0 }, t))
                        .await
                        .map(|_| ()),
                ),
                admin_only(who),
            ),
            (
                "member update",
                code(
                    c.cluster
                        .member_update(with_token(
                            MemberUpdateRequest {
                                id: 1,
                                peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                            },
                            t,
                        ))
                        .await
                        .map(|_| ()),
                ),
                // Root passes the check and then finds no member 1.
                admin_only(who).or(Some(Code::NotFound)),
            ),
            (
                "role list",
                code(
                    c.auth
                        .role_list(with_token(AuthRoleListRequest {}, t))
                        .await
                        .map(|_| ()),
                ),
                admin_only(who),
            ),
            (
                "user get self",
                code(
                    c.auth
                        .user_get(with_token(AuthUserGetRequest { name: "u".into() }, t))
                        .await
                        .map(|_| ()),
                ),
                // etcd lets a user read itself even with an old token.
                match who {
                    Who::User | Who::Root | Who::Stale => None,
                    other => untrusted(other),
                },
            ),
            (
                "status (anyone)",
                code(
                    c.maintenance
                        .status(with_token(StatusRequest {}, t))
                        .await
                        .map(|_| ()),
                ),
                None,
            ),
        ];
        for (what, got, want) in checks {
            if got != want {
                mismatches.push(format!("{who:?} {what}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn our_client_authenticates_again_when_its_token_goes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let mut c = etcd.client().await;
    set_up_users(&mut c).await;
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let credentials = etcd_client::Credentials::parse("u:upw").unwrap();
    let mut user = Client::connect_as(&[etcd.client_url.as_str()], Default::default(), credentials)
        .await
        .unwrap();
    user.put("foo", "1").await.unwrap();
    // Any auth change makes the token old; the next call authenticates again and succeeds.
    let root = authenticate(&mut c, "root", "rootpw").await.unwrap();
    c.auth
        .role_add(with_token(
            AuthRoleAddRequest { name: "x".into() },
            Some(&root),
        ))
        .await
        .unwrap();
    let stale = user.kv.put(PutRequest {
        key: b"foo".to_vec(),
        ..Default::default()
    });
    assert_eq!(
        stale.await.unwrap_err().message(),
        "etcdserver: revision of auth store is old",
        "the raw stub does not retry"
    );
    user.put("foo", "2").await.unwrap();
    assert_eq!(user.get("foo").await.unwrap().kvs[0].value, b"2");
    // A wrong password is an error at connect time.
    let wrong = etcd_client::Credentials::parse("u:nope").unwrap();
    let refused = Client::connect_as(&[etcd.client_url.as_str()], Default::default(), wrong).await;
    assert!(refused.is_err());
}
