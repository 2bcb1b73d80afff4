//! The Cluster service. Membership changes arrive with the cluster work; MemberList is served
//! from the applied membership.

use std::sync::Arc;

use etcd_api::etcdserverpb::cluster_server::Cluster;
use etcd_api::etcdserverpb::{MemberListRequest, MemberListResponse};
use tonic::{Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: tonic::Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.linearizable_barrier().await?;
        }
        let state = self.server.cluster_state();
        Ok(Response::new(MemberListResponse {
            header: self.server.current_header(),
            members: state.membership.to_wire(),
        }))
    }
}
