//! Services whose issues have not landed yet: every method answers UNIMPLEMENTED (the
//! generated default), so clients get a clear error instead of a hang.

use etcd_api::etcdserverpb::auth_server::Auth;
use etcd_api::v3electionpb::election_server::Election;
use etcd_api::v3lockpb::lock_server::Lock;

pub struct Unimplemented;

impl Auth for Unimplemented {}
impl Lock for Unimplemented {}
impl Election for Unimplemented {}
