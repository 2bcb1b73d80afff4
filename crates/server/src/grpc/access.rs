//! Who is asking: the auth token of a gRPC request (`token` metadata, as etcd's clients send
//! it) resolved to a user and the auth revision it was issued at, and the permission checks
//! the services make before answering or proposing. Writes are checked again when applied
//! (`apply::check_permissions`), where the order of changes is settled.

use std::time::Instant;

use etcd_api::internalpb::RequestAuth;
use tonic::Extensions;
use tonic::metadata::MetadataMap;

/// What `caller` reads of a request: its metadata and extensions.
pub struct RequestParts<'a> {
    pub metadata: &'a MetadataMap,
    pub extensions: &'a Extensions,
}

impl<'a, T> From<&'a tonic::Request<T>> for RequestParts<'a> {
    fn from(request: &'a tonic::Request<T>) -> RequestParts<'a> {
        RequestParts {
            metadata: request.metadata(),
            extensions: request.extensions(),
        }
    }
}

use crate::auth::AuthError;
use crate::auth::checks::Asker;
use crate::auth::tokens::AuthInfo;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// The user behind a request; `None` while auth is off (everything is allowed then).
pub struct Caller(Option<AuthInfo>);

impl Caller {
    /// What a proposal carries for its apply-time check: always set for client requests, so
    /// a request without a token made just before auth was enabled is refused once it is.
    pub fn request_auth(&self) -> Option<RequestAuth> {
        let (user, revision) = match &self.0 {
            Some(info) => (info.user.clone(), info.revision),
            None => (String::new(), 0),
        };
        Some(RequestAuth { user, revision })
    }
}

/// The Common Name of the client certificate a connection was made with (set by the client
/// listener on each request of a TLS connection with a client certificate).
#[derive(Clone, Debug)]
pub struct ClientCommonName(pub std::sync::Arc<str>);

/// Resolves the request's token; without one, with `--client-cert-auth`, the client
/// certificate's Common Name is the user, at the current auth revision (etcd's
/// `AuthInfoFromTLS`). No user at all while auth is on is not an error here: the permission
/// check refuses it ("user name is empty"), as etcd does.
pub fn caller(server: &EtcdServer, request: &RequestParts<'_>) -> Result<Caller, ServerError> {
    let token = request.metadata.get("token").and_then(|t| t.to_str().ok());
    let (enabled, revision) = server.with_auth(|a| (a.is_enabled(), a.revision()));
    if !enabled {
        return Ok(Caller(None));
    }
    match token {
        None => {
            let common_name = request
                .extensions
                .get::<ClientCommonName>()
                .filter(|_| server.cfg.client_tls.info.client_cert_auth);
            Ok(Caller(Some(match common_name {
                Some(cn) => AuthInfo {
                    user: cn.0.to_string(),
                    revision,
                },
                None => AuthInfo {
                    user: String::new(),
                    revision: 0,
                },
            })))
        }
        Some(token) => match match &server.jwt {
            Some(jwt) => jwt.info(token),
            None => server.tokens.info(token, Instant::now()),
        } {
            Some(info) => Ok(Caller(Some(info))),
            None => Err(AuthError::InvalidAuthToken.into()),
        },
    }
}

/// Runs `check` for the caller against the auth store as it is now.
pub fn check(
    server: &EtcdServer,
    caller: &Caller,
    check: impl FnOnce(&Asker<'_>) -> Result<(), AuthError>,
) -> Result<(), ServerError> {
    let Some(info) = &caller.0 else {
        return Ok(());
    };
    server.with_auth(|store| {
        let asker = Asker {
            store,
            user: &info.user,
            revision: info.revision,
        };
        check(&asker).map_err(ServerError::from)
    })
}

/// The keys attached to a lease, for the checks of puts with a lease and of revocations.
pub fn lease_keys(server: &EtcdServer) -> impl Fn(i64) -> Vec<Vec<u8>> + '_ {
    move |id| server.lessor.lock().keys_of(id)
}

/// The caller of `request` must hold the root role (while auth is on), as etcd requires for
/// maintenance and membership changes.
pub fn require_admin(server: &EtcdServer, request: &RequestParts<'_>) -> Result<(), ServerError> {
    let caller = caller(server, request)?;
    check(server, &caller, |a| a.admin())
}
