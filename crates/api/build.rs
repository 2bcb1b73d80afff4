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
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A method whose issue has not landed answers UNIMPLEMENTED, as the issue asks.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
