"""python-etcd3 with a user and password over TLS: it authenticates, then sends the token as
call credentials on every request (grpcio sends those only over TLS)."""
import sys

import etcd3
import etcd3.exceptions
import grpc

host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]

alice = etcd3.client(host=host, port=port, ca_cert=ca, user="alice", password="alicepw")
alice.put("a/python", "hello")
value, _ = alice.get("a/python")
assert value == b"hello", value

try:
    alice.put("b/python", "not allowed")
    raise SystemExit("a put outside alice's permission went through")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
    assert e.details() == "etcdserver: permission denied", e.details()

try:
    etcd3.client(host=host, port=port, ca_cert=ca, user="alice", password="wrong").get("a/python")
    raise SystemExit("a wrong password was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert e.details() == "etcdserver: authentication failed, invalid user ID or password", e.details()

root = etcd3.client(host=host, port=port, ca_cert=ca, user="root", password="rootpw")
root.put("b/python", "root may")
assert root.get("b/python")[0] == b"root may"
print("python-etcd3 auth OK")
