//! Services whose issues have not landed yet: every method answers UNIMPLEMENTED (the
//! generated default), so clients get a clear error instead of a hang.

use etcd_api::etcdserverpb::auth_server::Auth;

pub struct Unimplemented;

impl Auth for Unimplemented {}
