use super::*;
use etcd_api::etcdserverpb::{PutRequest, RangeResponse, ResponseHeader, WatchRequest};
use etcd_api::mvccpb::KeyValue;
use futures::StreamExt;

#[test]
fn json_is_etcds_gateway_mapping() {
    let resp = RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 17368989521238926805,
            member_id: 1,
            revision: 2,
            raft_term: 2,
        }),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    // What etcd 3.4's gateway answered for the same range, byte for byte.
    assert_eq!(
        serde_json::to_string(&resp).unwrap(),
        r#"{"header":{"cluster_id":"17368989521238926805","member_id":"1","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
    );
    let put: PutRequest =
        serde_json::from_str(r#"{"key":"Zm9v","value":"YmFy","lease":"7"}"#).unwrap();
    assert_eq!(
        (put.key, put.value, put.lease),
        (b"foo".to_vec(), b"bar".to_vec(), 7)
    );
    // Numbers as numbers are taken too, and lowerCamelCase names.
    let put: PutRequest =
        serde_json::from_str(r#"{"key":"Zm9v","prevKv":true,"lease":7}"#).unwrap();
    assert!(put.prev_kv);
    assert_eq!(put.lease, 7);
}

#[test]
fn bad_bodies_are_invalid_arguments() {
    for body in [
        &b"{bad json"[..],
        br#"{"key": 123}"#,
        br#"{"key":"!!!"}"#,
        b"[]",
    ] {
        assert!(decode::<PutRequest>(body).is_err(), "{body:?}");
    }
    assert_eq!(decode::<PutRequest>(b"").unwrap(), PutRequest::default());
}

/// As grpc-gateway's decoder: the body's first JSON value is read, whatever follows is left
/// unread, and `null` is the default request (found by differential fuzzing against etcd
/// 3.4's gateway, from a damaged corpus body).
#[test]
fn only_the_first_json_value_of_a_body_is_read() {
    for body in [
        &br#"{"key":"YQ==","value":"Yg=="}"#[..],
        br#"  {"key":"YQ==","value":"Yg=="}xyz"#,
        br#"{"key":"YQ==","value":"Yg=="} {"key":"Yw=="}"#,
    ] {
        let put: PutRequest = decode(body).expect("a put");
        assert_eq!((put.key, put.value), (b"a".to_vec(), b"b".to_vec()));
    }
    assert_eq!(
        decode::<PutRequest>(b"null xyz").unwrap(),
        PutRequest::default()
    );
    assert!(decode::<PutRequest>(br#"{"key":"YQ==""#).is_err());
    assert!(decode::<PutRequest>(b"xyz").is_err());
    assert!(decode::<PutRequest>(b"1xyz").is_err());
}

/// As grpc-gateway's jsonpb: `null` is the field's default and unknown fields are skipped
/// (both found by differential fuzzing against etcd 3.4's gateway).
#[test]
fn null_and_unknown_fields_are_taken_as_etcd_takes_them() {
    let put: PutRequest =
        decode(br#"{"key":"Zm9v","lease":null,"prev_kv":null,"bogus":{"x":1}}"#).unwrap();
    assert_eq!(put.key, b"foo".to_vec());
    assert_eq!(put.lease, 0);
    let txn: etcd_api::etcdserverpb::TxnRequest =
        decode(br#"{"compare":[{"key":"Zm9v","value":null}],"success":null}"#).unwrap();
    assert_eq!(txn.compare[0].key, b"foo".to_vec());
    assert!(txn.success.is_empty());
}

#[test]
fn statuses_are_grpc_gateways() {
    assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
    assert_eq!(
        http_status(Code::Unknown),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
    assert_eq!(
        http_status(Code::FailedPrecondition),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        http_status(Code::Unavailable),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn stream_requests_are_read_as_they_arrive_and_bounded() {
    use tokio::sync::mpsc;
    let (tx, mut rx) = mpsc::channel::<WatchRequest>(16);
    let (ftx, mut frx) = mpsc::channel::<String>(1);
    // Two values, the second split across chunks.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(
            br#"{"create_request":{"key":"YQ=="}} {"cancel_req"#,
        )),
        Ok(Bytes::from_static(br#"uest":{"watch_id":"3"}}"#)),
    ];
    let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
    stream::read_requests_for_tests(body, tx, ftx, 1024).await;
    assert!(rx.recv().await.unwrap().request_union.is_some());
    assert!(rx.recv().await.unwrap().request_union.is_some());
    assert!(rx.recv().await.is_none());
    assert!(frx.try_recv().is_err(), "no failure");

    // A body that never completes a value is cut at the bound.
    let (tx, _rx) = mpsc::channel::<WatchRequest>(16);
    let (ftx, mut frx) = mpsc::channel::<String>(1);
    let start = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
        br#"{"create_request":{"key":""#,
    ))]);
    let endless = start.chain(
        futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(b"QUJD")))
            .take(100_000),
    );
    let body = axum::body::Body::from_stream(endless);
    stream::read_requests_for_tests(body, tx, ftx, 4096).await;
    let why = frx.recv().await.unwrap();
    assert_eq!(why, "etcdserver: request is too large");
}
