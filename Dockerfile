# syntax=docker/dockerfile:1
# etcd, etcdctl and etcdutl on Debian, from this repository (the build context):
#
#   docker build -t etcd-rs:3.4.23 .
#   docker run -d -p 2379:2379 -v etcd-data:/var/lib/etcd etcd-rs:3.4.23 \
#     --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379
#
# The image runs `etcd` with the given flags (or ETCD_* variables; not both for one setting).
# Other tools: `docker run --entrypoint etcdctl ...`. Data goes to /var/lib/etcd (a volume;
# default.etcd there without --data-dir), owned by the unprivileged user etcd (uid 10001): a
# host directory mounted there must be writable by that uid.

# Rust 1.85 or newer: the workspace uses edition 2024.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The `dist` profile (Cargo.toml): release, stripped, LTO. The cache mounts keep downloaded
# crates and compiled dependencies between builds, so the binaries are copied out in this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist --bin etcd --bin etcdctl --bin etcdutl \
    && mkdir /out \
    && cp target/dist/etcd target/dist/etcdctl target/dist/etcdutl /out/

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 etcd \
    && useradd --system --uid 10001 --gid etcd --home-dir /var/lib/etcd \
       --shell /usr/sbin/nologin etcd \
    && install -d -o etcd -g etcd -m 0700 /var/lib/etcd
COPY --from=build /out/ /usr/local/bin/
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/etcd
VOLUME /var/lib/etcd
# Clients, peers.
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/etcd"]
