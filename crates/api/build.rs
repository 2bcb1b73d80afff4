//! Compiles the protos with protox (a pure-Rust protobuf compiler), so building needs no
//! `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/v3lock.proto",
        "proto/v3election.proto",
        "proto/internal.proto",
        "proto/lease.proto",
        "proto/membership.proto",
        "proto/raft_internal.proto",
        "proto/etcd_files.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    // serde for etcd's public messages (the JSON gateway); not for our internal formats.
    let encoded = prost::Message::encode_to_vec(&descriptors);
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        // etcd's gateway (grpc-gateway's jsonpb) skips fields it does not know.
        .ignore_unknown_fields()
        .build(&[
            ".etcdserverpb",
            ".mvccpb",
            ".authpb",
            ".v3lockpb",
            ".v3electionpb",
            // etcd's InternalRaftRequest (in etcdserverpb) refers to these.
            ".membershippb",
        ])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A method whose issue has not landed answers UNIMPLEMENTED, as the issue asks.
        .generate_default_stubs(true)
        // prost's codec with each message's buffer sized once (src/codec.rs).
        .codec_path("crate::codec::ReservingCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
