//! `KV.RangeStream` (etcd 3.7): chunks that merge into exactly the Range answer, at one pinned
//! revision, sized by `--max-request-bytes`, with etcd's refusals.

mod common;

use common::EtcdProcess;
use etcd_api::authpb::permission::Type as PermType;
use etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_api::etcdserverpb::*;
use etcd_client::{Client, ConnectOptions, Credentials, merge_range_chunk, prefix_end};
use rand::{Rng, SeedableRng};

/// Every chunk of a stream, unmerged.
async fn chunks(client: &mut Client, req: RangeRequest) -> Vec<RangeResponse> {
    let mut stream = client
        .kv
        .range_stream(req)
        .await
        .expect("stream")
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        out.push(chunk.range_response.expect("a range response"));
    }
    out
}

fn merged(chunks: &[RangeResponse]) -> RangeResponse {
    let mut answer = RangeResponse::default();
    for chunk in chunks {
        merge_range_chunk(&mut answer, chunk.clone());
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_ranges_merge_into_the_range_answer() {
    let dir = tempfile::tempdir().unwrap();
    // A small request limit makes the chunks small, so every range takes many.
    let member = EtcdProcess::start(&dir.path().join("m"), &["--max-request-bytes", "65536"]).await;
    let mut client = member.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..400 {
        let size = if i % 50 == 0 {
            40_000
        } else {
            rng.random_range(0..3000)
        };
        let value: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        client.put(format!("k/{i:04}"), value).await.unwrap();
    }
    for i in (0..400).step_by(7) {
        client.delete(format!("k/{i:04}")).await.unwrap();
    }
    let middle = client.get("k/0000").await.unwrap().header.unwrap().revision - 300;
    let base = RangeRequest {
        key: b"k/".to_vec(),
        range_end: prefix_end(b"k/"),
        ..Default::default()
    };
    let requests = [
        base.clone(),
        RangeRequest {
            limit: 37,
            ..base.clone()
        },
        RangeRequest {
            limit: 1000,
            ..base.clone()
        },
        RangeRequest {
            keys_only: true,
            ..base.clone()
        },
        RangeRequest {
            count_only: true,
            ..base.clone()
        },
        RangeRequest {
            revision: middle,
            ..base.clone()
        },
        RangeRequest {
            serializable: true,
            limit: 5,
            ..base.clone()
        },
        RangeRequest {
            key: b"k/0100".to_vec(),
            range_end: b"k/0200".to_vec(),
            ..Default::default()
        },
        RangeRequest {
            key: b"k/0001".to_vec(),
            ..Default::default()
        },
        RangeRequest {
            key: b"nothing".to_vec(),
            ..Default::default()
        },
        RangeRequest {
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Key as i32,
            ..base.clone()
        },
    ];
    for req in requests {
        let plain = client.kv.range(req.clone()).await.unwrap().into_inner();
        let parts = chunks(&mut client, req.clone()).await;
        let streamed = merged(&parts);
        assert_eq!(streamed.kvs, plain.kvs, "{req:?}");
        assert_eq!(
            (streamed.more, streamed.count),
            (plain.more, plain.count),
            "{req:?}"
        );
        assert_eq!(
            streamed.header.as_ref().map(|h| h.revision),
            plain.header.as_ref().map(|h| h.revision),
            "{req:?}"
        );
        // Only the last chunk carries the header, more and count.
        let (last, rest) = parts.split_last().expect("at least one chunk");
        assert!(last.header.is_some(), "{req:?}");
        assert!(
            rest.iter()
                .all(|c| c.header.is_none() && !c.more && c.count == 0),
            "{req:?}"
        );
        if req == base {
            assert!(parts.len() > 5, "many chunks expected, got {}", parts.len());
            // Each chunk stays near the target size: never more than twice it plus one key.
            for chunk in &parts {
                let bytes = prost::Message::encoded_len(chunk);
                assert!(bytes < 2 * 65536 + 41_000, "a chunk of {bytes} bytes");
            }
        }
    }
    // The helper the client library offers gives the same.
    let plain = client.kv.range(base.clone()).await.unwrap().into_inner();
    assert_eq!(client.range_streamed(base).await.unwrap().kvs, plain.kvs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_at_one_revision_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &["--max-request-bytes", "8192"]).await;
    let mut client = member.client().await;
    for i in 0..200 {
        client
            .put(format!("p/{i:03}"), vec![b'x'; 500])
            .await
            .unwrap();
    }
    let req = RangeRequest {
        key: b"p/".to_vec(),
        range_end: prefix_end(b"p/"),
        ..Default::default()
    };
    let mut stream = client
        .kv
        .range_stream(req.clone())
        .await
        .unwrap()
        .into_inner();
    let first = stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .range_response
        .unwrap();
    assert_eq!(first.kvs.len(), 10, "etcd's first chunk has 10 keys");
    // Writes inside the range after the stream began: later chunks do not show them.
    let mut writer = member.client().await;
    for i in 0..200 {
        writer
            .put(format!("p/{i:03}"), b"new".to_vec())
            .await
            .unwrap();
    }
    writer.put("p/zzz", "added").await.unwrap();
    let mut answer = first;
    while let Some(chunk) = stream.message().await.unwrap() {
        merge_range_chunk(&mut answer, chunk.range_response.unwrap());
    }
    let revision = answer.header.as_ref().unwrap().revision;
    let then = client
        .kv
        .range(RangeRequest { revision, ..req })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.kvs, then.kvs);
    assert_eq!(answer.count, 200);
    assert!(answer.kvs.iter().all(|kv| kv.value == vec![b'x'; 500]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_refuse_what_etcd_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let mut client = member.client().await;
    client.put("secret/a", "1").await.unwrap();
    let refused = |req: RangeRequest| {
        let mut client = client.clone();
        async move {
            match client.kv.range_stream(req).await {
                Err(status) => status,
                Ok(response) => response.into_inner().message().await.expect_err("refused"),
            }
        }
    };
    let descending = refused(RangeRequest {
        key: b"a".to_vec(),
        sort_order: SortOrder::Descend as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(descending.code(), tonic::Code::Unimplemented);
    assert_eq!(
        descending.message(),
        "RangeStream does not support custom sort orders"
    );
    let filtered = refused(RangeRequest {
        key: b"a".to_vec(),
        min_create_revision: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        filtered.message(),
        "RangeStream does not support revision filters"
    );
    let empty = refused(RangeRequest::default()).await;
    assert_eq!(empty.message(), "etcdserver: key is not provided");

    // With auth on, a user may stream only what he may read.
    common::add_root(&mut client, "pw").await;
    common::add_user_with_permission(
        &mut client,
        ("u", "pw"),
        "r",
        PermType::Read,
        (b"public/", &prefix_end(b"public/")),
    )
    .await;
    client.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let mut user = Client::connect_as(
        &[member.client_url.as_str()],
        ConnectOptions::default(),
        Credentials {
            user: "u".into(),
            password: "pw".into(),
        },
    )
    .await
    .unwrap();
    let denied = user
        .range_streamed(RangeRequest {
            key: b"secret/".to_vec(),
            range_end: prefix_end(b"secret/"),
            ..Default::default()
        })
        .await
        .expect_err("no permission");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let allowed = user
        .range_streamed(RangeRequest {
            key: b"public/".to_vec(),
            range_end: prefix_end(b"public/"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(allowed.count, 0);
}

/// Large plain ranges take a share of the member's read budget (256 MiB) and give it back
/// once sent, or once the client has gone: 120 answers of 3 MiB, a third of them abandoned
/// midway, would exhaust a budget that leaked and hang the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_ranges_give_their_read_budget_back() {
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let mut client = member.client().await;
    for i in 0..48 {
        client
            .put(format!("big/{i:02}"), vec![b'v'; 64 << 10])
            .await
            .unwrap();
    }
    let req = RangeRequest {
        key: b"big/".to_vec(),
        range_end: prefix_end(b"big/"),
        ..Default::default()
    };
    for round in 0..120 {
        let call = client.kv.range(req.clone());
        if round % 3 == 0 {
            // Abandoned: the answer may be read, being sent, or not started.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(2), call).await;
            continue;
        }
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), call)
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: the range waited for budget never given back")
            })
            .unwrap()
            .into_inner();
        assert_eq!(answer.kvs.len(), 48);
    }
}
