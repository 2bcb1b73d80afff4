"""Drives our server with python-etcd3 (Debian's python3-etcd3): what a Python user does."""
import sys
import time

import etcd3

host, port = sys.argv[1], int(sys.argv[2])
c = etcd3.client(host=host, port=port)

c.put("/app/config", "v1")
value, meta = c.get("/app/config")
assert value == b"v1", value
assert meta.version == 1

c.put("/app/other", "x")
keys = sorted(m.key for _, m in c.get_prefix("/app/"))
assert keys == [b"/app/config", b"/app/other"], keys

ok, _ = c.transaction(
    compare=[c.transactions.value("/app/config") == "v1"],
    success=[c.transactions.put("/app/config", "v2")],
    failure=[],
)
assert ok
assert c.get("/app/config")[0] == b"v2"

lease = c.lease(30)
c.put("/app/ephemeral", "e", lease=lease)
assert c.get("/app/ephemeral")[0] == b"e"
lease.refresh()
lease.revoke()
assert c.get("/app/ephemeral")[0] is None

assert c.delete("/app/other")
assert c.get("/app/other")[0] is None

status = c.status()
assert status.version == "3.4.23", status.version
members = list(c.members)
assert len(members) == 1

with c.lock("py-lock", ttl=10) as lock:
    assert lock.is_acquired()

print("python-etcd3 OK")
