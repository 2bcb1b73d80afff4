//! The Auth service: enabling, users, roles, permissions (changes go through Raft, checked
//! when applied), reads of the auth store (after a linearizable barrier), and Authenticate,
//! which checks a password here and replicates the token it hands out.
//!
//! Passwords are hashed (bcrypt, `--bcrypt-cost`) by the member that takes the request, on
//! the blocking pool and a few at a time, so neither the log nor the other members ever see
//! them and a storm of requests cannot starve the threads that serve reads and writes.

use std::sync::Arc;

use etcd_api::etcdserverpb::auth_server::Auth;
use etcd_api::etcdserverpb::*;
use etcd_api::internalpb::AuthenticateRecord;
use etcd_api::internalpb::internal_request::Request;
use tonic::{Response, Status};

use super::access::{self, Caller};
use super::kv::unexpected;
use crate::apply::ApplyResponse;
use crate::auth::checks::Asker;
use crate::auth::tokens::SimpleTokens;
use crate::auth::{AuthError, AuthStore};
use crate::error::ServerError;
use crate::server::EtcdServer;

pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

/// A bcrypt hash of a password nobody is asked for, checked when the user does not exist,
/// so that "no such user" takes as long as "wrong password" and does not tell them apart.
/// Computes the dummy hash ahead of the first Authenticate that needs it, off the runtime.
pub fn warm_up(cost: u32) {
    tokio::task::spawn_blocking(move || {
        dummy_hash(cost);
    });
}

/// Made with the member's own `--bcrypt-cost`, so checking it costs what a real check does.
fn dummy_hash(cost: u32) -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let secret: [u8; 16] = rand::random();
        bcrypt::hash(secret, cost).unwrap_or_default()
    })
}

impl AuthService {
    /// Proposes an auth change in the caller's name (checked for admin when applied).
    async fn change(&self, caller: &Caller, request: Request) -> Result<ResponseHeader, Status> {
        access::check(&self.server, caller, |a| a.admin())?;
        let applied = self
            .server
            .propose_as(request, caller.request_auth())
            .await?;
        match applied.response {
            ApplyResponse::Auth => Ok(self.header()),
            other => Err(unexpected(other)),
        }
    }

    /// A read of the auth store as of now, by an admin (or whom `allowed` lets in).
    async fn read<R>(
        &self,
        caller: &Caller,
        allowed: impl FnOnce(&Asker<'_>) -> bool,
        f: impl FnOnce(&AuthStore) -> Result<R, AuthError>,
    ) -> Result<R, Status> {
        self.server.linearizable_barrier().await?;
        access::check(&self.server, caller, |a| {
            a.admin()
                .or_else(|e| if allowed(a) { Ok(()) } else { Err(e) })
        })?;
        Ok(self.server.with_auth(f).map_err(ServerError::from)?)
    }

    fn header(&self) -> ResponseHeader {
        self.server.current_header().unwrap_or_default()
    }

    fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        Ok(access::caller(&self.server, &request.into())?)
    }

    /// bcrypt off the serving threads, a few at a time.
    async fn bcrypt<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Status> {
        let _slot = self
            .server
            .bcrypt_slots
            .acquire()
            .await
            .map_err(|_| Status::from(ServerError::Stopped))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Status::internal(format!("password hashing failed: {e}")))
    }

    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.server.cfg.bcrypt_cost;
        self.bcrypt(move || {
            bcrypt::hash_with_result(password, cost)
                .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        })
        .await?
        .map_err(|e| Status::internal(format!("cannot hash the password: {e}")))
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: tonic::Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthEnable(request.into_inner()))
            .await?;
        Ok(Response::new(AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        request: tonic::Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthDisable(request.into_inner()))
            .await?;
        Ok(Response::new(AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(
        &self,
        _request: tonic::Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.server.linearizable_barrier().await?;
        let (enabled, auth_revision) = self.server.with_auth(|a| (a.is_enabled(), a.revision()));
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.header()),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        request: tonic::Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = request.into_inner();
        let stored = self.server.with_auth(|a| a.password_hash(&req.name));
        let (hash, known) = match stored {
            Ok((hash, _)) => (Some(hash), true),
            Err(AuthError::AuthFailed) => (None, false),
            Err(e) => return Err(ServerError::from(e).into()),
        };
        let password = req.password;
        let cost = self.server.cfg.bcrypt_cost;
        let matches = self
            .bcrypt(move || {
                let hash = hash.as_deref().unwrap_or_else(|| dummy_hash(cost));
                bcrypt::verify(password, hash).unwrap_or(false)
            })
            .await?;
        if !(known && matches) {
            tracing::info!(
                user = req.name,
                "authentication failed, invalid user ID or password"
            );
            return Err(ServerError::from(AuthError::AuthFailed).into());
        }
        if let Some(jwt) = &self.server.jwt {
            // A signed token needs no replication: any member with the key verifies it.
            self.server.linearizable_barrier().await?;
            let revision = self.server.with_auth(|a| a.revision());
            let token = jwt.assign(&req.name, revision).map_err(ServerError::from)?;
            tracing::info!(user = req.name, "authenticated a user");
            return Ok(Response::new(AuthenticateResponse {
                header: Some(self.header()),
                token,
            }));
        }
        let token = SimpleTokens::generate(self.server.applied_index());
        let applied = self
            .server
            .propose(Request::Authenticate(AuthenticateRecord {
                name: req.name.clone(),
                simple_token: token,
            }))
            .await?;
        match applied.response {
            ApplyResponse::Authenticated(token) => {
                tracing::info!(user = req.name, "authenticated a user");
                Ok(Response::new(AuthenticateResponse {
                    header: Some(self.header()),
                    token,
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn user_add(
        &self,
        request: tonic::Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let caller = self.caller(&request)?;
        let mut req = request.into_inner();
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        req.hashed_password = if no_password {
            String::new()
        } else {
            self.hash(std::mem::take(&mut req.password)).await?
        };
        req.password.clear();
        let header = self.change(&caller, Request::AuthUserAdd(req)).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        request: tonic::Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = self.caller(&request)?;
        let name = request.into_inner().name;
        // A user may look itself up (etcd's rule).
        let roles = self
            .read(&caller, |a| a.user == name, |a| a.user_get(&name))
            .await?;
        Ok(Response::new(AuthUserGetResponse {
            header: Some(self.header()),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: tonic::Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let caller = self.caller(&request)?;
        let users = self.read(&caller, |_| false, |a| Ok(a.user_list())).await?;
        Ok(Response::new(AuthUserListResponse {
            header: Some(self.header()),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: tonic::Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthUserDelete(request.into_inner()))
            .await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        request: tonic::Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let caller = self.caller(&request)?;
        let mut req = request.into_inner();
        req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        let header = self
            .change(&caller, Request::AuthUserChangePassword(req))
            .await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        request: tonic::Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthUserGrantRole(request.into_inner()))
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: tonic::Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthUserRevokeRole(request.into_inner()))
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        request: tonic::Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthRoleAdd(request.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        request: tonic::Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = self.caller(&request)?;
        let role = request.into_inner().role;
        // A user may look up the roles it holds (etcd's rule).
        let perm = self
            .read(
                &caller,
                |a| {
                    a.store
                        .user_get(a.user)
                        .is_ok_and(|roles| roles.contains(&role))
                },
                |a| a.role_get(&role),
            )
            .await?;
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(self.header()),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: tonic::Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let caller = self.caller(&request)?;
        let roles = self.read(&caller, |_| false, |a| Ok(a.role_list())).await?;
        Ok(Response::new(AuthRoleListResponse {
            header: Some(self.header()),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: tonic::Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(&caller, Request::AuthRoleDelete(request.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: tonic::Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(
                &caller,
                Request::AuthRoleGrantPermission(request.into_inner()),
            )
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: tonic::Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let caller = self.caller(&request)?;
        let header = self
            .change(
                &caller,
                Request::AuthRoleRevokePermission(request.into_inner()),
            )
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
