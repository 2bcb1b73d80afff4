//! The KV, Maintenance and Cluster services end to end through the real binary: what etcd's
//! clients see, including error codes and etcd's exact messages.

mod common;

use common::EtcdProcess;
use etcd_api::etcdserverpb::{
    AlarmRequest, CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest, MemberListRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest, alarm_request::AlarmAction,
    compare, request_op, response_op,
};
use tonic::Code;

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn put_get_delete_with_headers_and_prev_kv() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("kv.etcd"), &[]).await;
    let mut c = etcd.client().await;

    let r1 = c.put("k", "v1").await.unwrap();
    let h1 = r1.header.unwrap();
    assert!(h1.cluster_id != 0 && h1.member_id != 0 && h1.raft_term >= 1);
    let r2 =
        c.kv.put(PutRequest {
            key: "k".into(),
            value: "v2".into(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r2.header.unwrap().revision, h1.revision + 1);
    assert_eq!(r2.prev_kv.unwrap().value, b"v1");

    let got = c.get("k").await.unwrap();
    let kv = &got.kvs[0];
    assert_eq!((kv.version, kv.value.as_slice()), (2, &b"v2"[..]));
    assert_eq!(kv.create_revision, h1.revision);

    let del =
        c.kv.delete_range(DeleteRangeRequest {
            key: "k".into(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, 1);
    assert_eq!(del.prev_kvs[0].value, b"v2");
    assert!(c.get("k").await.unwrap().kvs.is_empty());

    // A serializable read is served locally, with the same data.
    c.put("s", "x").await.unwrap();
    let ser =
        c.kv.range(RangeRequest {
            key: "s".into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ser.kvs[0].value, b"x");
}

#[tokio::test]
async fn errors_carry_etcds_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("err.etcd"), &["--max-txn-ops", "2"]).await;
    let mut c = etcd.client().await;

    let expect = |r: Result<_, tonic::Status>, code: Code, msg: &str| {
        let status = r.expect_err("an error");
        assert_eq!((status.code(), status.message()), (code, msg));
    };
    expect(
        c.kv.put(PutRequest::default()).await.map(|_| ()),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    expect(
        c.kv.put(PutRequest {
            key: "k".into(),
            lease: 42,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    expect(
        c.kv.put(PutRequest {
            key: "missing".into(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    let three = TxnRequest {
        success: vec![put_op("a", "1"), put_op("b", "1"), put_op("c", "1")],
        ..Default::default()
    };
    expect(
        c.kv.txn(three).await.map(|_| ()),
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let dup = TxnRequest {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    expect(
        c.kv.txn(dup).await.map(|_| ()),
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );

    for i in 0..5 {
        c.put("r", i.to_string()).await.unwrap();
    }
    let rev = c.get("r").await.unwrap().header.unwrap().revision;
    expect(
        c.kv.range(RangeRequest {
            key: "r".into(),
            revision: rev + 10,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    c.kv.compact(CompactionRequest {
        revision: rev - 1,
        physical: true,
    })
    .await
    .unwrap();
    expect(
        c.kv.range(RangeRequest {
            key: "r".into(),
            revision: rev - 2,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    expect(
        c.kv.compact(CompactionRequest {
            revision: rev - 2,
            physical: false,
        })
        .await
        .map(|_| ()),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
}

#[tokio::test]
async fn oversized_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(
        &dir.path().join("big.etcd"),
        &["--max-request-bytes", "1024"],
    )
    .await;
    let mut c = etcd.client().await;
    let status = c.put("big", vec![b'x'; 4096]).await.expect_err("refused");
    assert!(
        status
            .to_string()
            .contains("etcdserver: request is too large"),
        "{status}"
    );
    // Still serving afterwards.
    c.put("small", "ok").await.unwrap();
}

#[tokio::test]
async fn txn_compares_and_branches() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("txn.etcd"), &[]).await;
    let mut c = etcd.client().await;
    c.put("x", "1").await.unwrap();
    let txn = |value: &str| TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: "x".into(),
            target_union: Some(compare::TargetUnion::Value(value.into())),
            ..Default::default()
        }],
        success: vec![put_op("x", "2")],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: "x".into(),
                ..Default::default()
            })),
        }],
    };
    let ok = c.kv.txn(txn("1")).await.unwrap().into_inner();
    assert!(ok.succeeded);
    let failed = c.kv.txn(txn("1")).await.unwrap().into_inner();
    assert!(!failed.succeeded);
    match &failed.responses[0].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"2"),
        other => panic!("expected a range response, got {other:?}"),
    }
}

#[tokio::test]
async fn maintenance_and_membership() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("m.etcd"), &[]).await;
    let mut c = etcd.client().await;
    c.put("a", "1").await.unwrap();

    let status = c
        .maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let header = status.header.unwrap();
    assert_eq!(status.leader, header.member_id);
    assert_eq!(status.version, "3.4.23");
    assert!(status.raft_applied_index >= 2 && status.raft_index >= status.raft_applied_index);
    assert!(status.db_size > 0);

    let members = c
        .cluster
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].name, "test");
    assert_eq!(
        members.members[0].client_ur_ls,
        vec![etcd.client_url.clone()]
    );

    let h1 = c
        .maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let h2 = c
        .maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h1.hash, h2.hash);
    c.put("b", "2").await.unwrap();
    let h3 = c
        .maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(h1.hash, h3.hash);

    let alarms = c
        .maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(alarms.alarms.is_empty());
}

#[tokio::test]
async fn restart_resumes_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdProcess::start(&dir.path().join("r.etcd"), &[]).await;
    let mut c = etcd.client().await;
    for i in 0..50 {
        c.put(format!("key{i:02}"), format!("v{i}")).await.unwrap();
    }
    let before = c.get_prefix("key").await.unwrap();
    etcd.kill();
    etcd.spawn();
    etcd.wait_ready().await;
    let mut c = etcd.client().await;
    let after = c.get_prefix("key").await.unwrap();
    assert_eq!(before.kvs, after.kvs);
    assert!(after.header.unwrap().revision >= before.header.unwrap().revision);
}

/// A txn that only reads is answered by the member without a log entry, as etcd answers it,
/// with the same answers (branch, values, header revision, errors) as an applied one.
#[tokio::test]
async fn read_only_txns_take_no_log_entry() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("rotxn.etcd"), &[]).await;
    let mut c = etcd.client().await;
    c.put("x", "1").await.unwrap();
    let put = c.put("y", "2").await.unwrap();
    let revision = put.header.unwrap().revision;
    let range = |key: &str, revision: i64, serializable: bool| RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.into(),
            revision,
            serializable,
            ..Default::default()
        })),
    };
    let read = |value: &str, serializable: bool| TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: "x".into(),
            target_union: Some(compare::TargetUnion::Value(value.into())),
            ..Default::default()
        }],
        success: vec![range("y", 0, serializable)],
        failure: vec![
            range("x", revision - 1, serializable),
            RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    compare: vec![],
                    success: vec![range("y", 0, serializable)],
                    failure: vec![],
                })),
            },
        ],
    };
    let before = raft_index(&mut c).await;
    const READS: u64 = 40;
    for i in 0..READS {
        let serializable = i % 2 == 0;
        let ok =
            c.kv.txn(read("1", serializable))
                .await
                .unwrap()
                .into_inner();
        assert!(ok.succeeded);
        assert_eq!(ok.header.unwrap().revision, revision);
        match &ok.responses[..] {
            [r] => match &r.response {
                Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"2"),
                other => panic!("expected a range, got {other:?}"),
            },
            other => panic!("expected one response, got {other:?}"),
        }
        let failed =
            c.kv.txn(read("0", serializable))
                .await
                .unwrap()
                .into_inner();
        assert!(!failed.succeeded);
        assert_eq!(failed.responses.len(), 2);
        match (&failed.responses[0].response, &failed.responses[1].response) {
            (
                Some(response_op::Response::ResponseRange(old)),
                Some(response_op::Response::ResponseTxn(nested)),
            ) => {
                assert_eq!(old.kvs[0].value, b"1");
                assert!(nested.succeeded);
                assert_eq!(nested.header.as_ref().unwrap().revision, 0);
            }
            other => panic!("unexpected responses {other:?}"),
        }
    }
    // Served through Raft, every txn above would be an entry; a member may still propose a
    // few of its own meanwhile (its attributes, the cluster version).
    let after = raft_index(&mut c).await;
    assert!(
        after - before < READS,
        "{} log entries for {} read-only txns",
        after - before,
        2 * READS
    );
    // The same errors as an applied txn: a future revision is refused.
    let future = TxnRequest {
        compare: vec![],
        success: vec![range("x", revision + 100, false)],
        failure: vec![],
    };
    let err = c.kv.txn(future).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(
        err.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

async fn raft_index(c: &mut etcd_client::Client) -> u64 {
    c.maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .raft_index
}
