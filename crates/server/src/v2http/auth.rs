//! v2 auth over HTTP (etcd 3.4's `/v2/auth/*` and the checks of v2 requests): users and
//! roles live in the v2 store under `/2` and change through Raft like any v2 write; a
//! request is its Basic-auth user, or with `--client-cert-auth` a user named by a Common
//! Name of its certificate chain, or else the `guest` role.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use etcd_api::etcdserverpb::Request as V2Request;
use etcd_api::internalpb::internal_request::Request as Proposal;

use super::members::http_error;
use super::method_not_allowed;
use crate::apply::ApplyResponse;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::v2::auth::{
    AuthError, GUEST_ROLE, PERMS_PREFIX, ROOT_ROLE, Role, User, auth_err, go_json, guest_role,
    root_role,
};
use crate::v2::error::{V2Error, code};
use crate::v2::event::Event;

/// The Common Names of a client's certificate chain, leaf first, ending with its CA's (Go
/// looks each up as a user, in that order).
#[derive(Clone, Debug)]
pub struct ClientCertChainNames(pub Arc<[String]>);

impl ClientCertChainNames {
    pub fn of(chain: &[etcd_transport::CertIdentity]) -> ClientCertChainNames {
        let mut names: Vec<String> = chain.iter().filter_map(|c| c.common_name.clone()).collect();
        if let Some(ca) = chain.last().and_then(|c| c.issuer_common_name.clone())
            && !names.contains(&ca)
        {
            names.push(ca);
        }
        ClientCertChainNames(names.into())
    }
}

/// Who is asking, taken from the request before its body is read.
pub struct Asker {
    write: bool,
    authorization: Option<String>,
    cert_names: Option<ClientCertChainNames>,
}

impl Asker {
    pub fn of(req: &Request) -> Asker {
        Asker::from_parts(req.method(), req.headers(), req.extensions())
    }

    fn from_parts(method: &Method, headers: &HeaderMap, ext: &axum::http::Extensions) -> Asker {
        Asker {
            write: !matches!(*method, Method::GET | Method::HEAD),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            cert_names: ext.get::<ClientCertChainNames>().cloned(),
        }
    }
}

/// Why an auth operation failed, answered as etcd's writeError does.
enum Failure {
    Auth(AuthError),
    Store(V2Error),
    Server(ServerError),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Auth(e)
    }
}

impl Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Auth(e) => http_error(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                &e.message,
            ),
            Failure::Store(e) => super::keys::error_response(&e),
            Failure::Server(e) => http_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn code(&self) -> Option<u32> {
        match self {
            Failure::Store(e) => Some(e.code),
            _ => None,
        }
    }
}

/// etcd's v2auth store: reads and writes of `/2/...` as v2 requests.
struct AuthStore<'a> {
    server: &'a Arc<EtcdServer>,
}

impl AuthStore<'_> {
    fn path(res: &str) -> String {
        crate::v2::path::join(PERMS_PREFIX, res)
    }

    async fn propose(&self, req: V2Request) -> Result<Arc<Event>, Failure> {
        match self.server.propose(Proposal::V2(req)).await {
            Ok(applied) => match applied.response {
                ApplyResponse::V2(Some(Ok(event))) => Ok(event),
                ApplyResponse::V2(Some(Err(e))) => Err(Failure::Store(e)),
                other => Err(Failure::Server(ServerError::Internal(format!(
                    "unexpected answer to a v2 auth request: {other:?}"
                )))),
            },
            Err(e) => Err(Failure::Server(e)),
        }
    }

    /// A resource under `/2`, from this member's store or (`quorum`) through Raft.
    async fn get(&self, res: &str, quorum: bool) -> Result<Arc<Event>, Failure> {
        let path = Self::path(res);
        if quorum {
            return self
                .propose(V2Request {
                    method: "QGET".into(),
                    path,
                    ..Default::default()
                })
                .await;
        }
        let now = crate::v2::unix_nanos(std::time::SystemTime::now());
        let got = self.server.v2.lock().get(&path, false, now);
        got.map(Arc::new).map_err(Failure::Store)
    }

    /// etcd's ensureAuthDirectories: `/2`, `/2/users/`, `/2/roles/` and `/2/enabled`, once
    /// per member life.
    async fn ensure_dirs(&self) -> Result<(), Failure> {
        if self.server.v2.auth_dirs_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        for dir in ["", "/users/", "/roles/"] {
            let created = self
                .propose(V2Request {
                    method: "PUT".into(),
                    path: Self::path(dir),
                    dir: true,
                    prev_exist: Some(false),
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.code() == Some(code::NODE_EXIST) => {}
                Err(e) => return Err(e),
            }
        }
        let enabled = self
            .propose(V2Request {
                method: "PUT".into(),
                path: Self::path("/enabled"),
                val: "false".into(),
                prev_exist: Some(false),
                ..Default::default()
            })
            .await;
        match enabled {
            Ok(_) => {}
            Err(e) if e.code() == Some(code::NODE_EXIST) => {}
            Err(e) => return Err(e),
        }
        self.server
            .v2
            .auth_dirs_ready
            .store(true, Ordering::Release);
        Ok(())
    }

    async fn set(&self, res: &str, value: String, prev_exist: bool) -> Result<(), Failure> {
        self.ensure_dirs().await?;
        self.propose(V2Request {
            method: "PUT".into(),
            path: Self::path(res),
            val: value,
            prev_exist: Some(prev_exist),
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    async fn delete(&self, res: &str) -> Result<(), Failure> {
        self.ensure_dirs().await?;
        self.propose(V2Request {
            method: "DELETE".into(),
            path: Self::path(res),
            prev_exist: Some(true),
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    fn enabled(&self) -> bool {
        let now = crate::v2::unix_nanos(std::time::SystemTime::now());
        let got = self
            .server
            .v2
            .lock()
            .get(&Self::path("/enabled"), false, now);
        got.ok()
            .and_then(|e| e.node.value.clone())
            .is_some_and(|v| v == "true")
    }

    async fn get_user(&self, name: &str, quorum: bool) -> Result<User, Failure> {
        let event = match self.get(&format!("/users/{name}"), quorum).await {
            Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => {
                return Err(auth_err(404, format!("User {name} does not exist.")).into());
            }
            other => other?,
        };
        let user: User = serde_json::from_str(event.node.value.as_deref().unwrap_or(""))
            .map_err(|e| Failure::Server(ServerError::Internal(e.to_string())))?;
        Ok(user.with_root_role())
    }

    async fn get_role(&self, name: &str, quorum: bool) -> Result<Role, Failure> {
        if name == ROOT_ROLE {
            return Ok(root_role());
        }
        let event = match self.get(&format!("/roles/{name}"), quorum).await {
            Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => {
                return Err(auth_err(404, format!("Role {name} does not exist.")).into());
            }
            other => other?,
        };
        serde_json::from_str(event.node.value.as_deref().unwrap_or(""))
            .map_err(|e| Failure::Server(ServerError::Internal(e.to_string())))
    }

    /// The names under `/2/users/` or `/2/roles/`, sorted (empty when none).
    async fn names(&self, dir: &str) -> Result<Vec<String>, Failure> {
        match self.get(dir, false).await {
            Ok(event) => {
                let mut names: Vec<String> = event
                    .node
                    .nodes
                    .iter()
                    .map(|n| crate::v2::path::split(&n.key).1.to_string())
                    .collect();
                names.sort();
                Ok(names)
            }
            Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn all_roles(&self) -> Result<Vec<String>, Failure> {
        let mut roles = self.names("/roles/").await?;
        roles.push(ROOT_ROLE.into());
        roles.sort();
        Ok(roles)
    }

    async fn hash(&self, password: String) -> Result<String, Failure> {
        bcrypt_work(self.server, move || {
            bcrypt::hash_with_result(password, bcrypt::DEFAULT_COST)
                .map(|h| h.format_for_version(bcrypt::Version::TwoA))
                .map_err(|e| e.to_string())
        })
        .await?
        .map_err(|e| Failure::Server(ServerError::Internal(format!("cannot hash: {e}"))))
    }

    async fn create_user(&self, mut user: User) -> Result<User, Failure> {
        user = user.with_root_role();
        if user.password.is_empty() {
            return Err(auth_err(
                400,
                format!("Cannot create user {} with an empty password", user.user),
            )
            .into());
        }
        user.password = self.hash(user.password.clone()).await?;
        match self
            .set(&format!("/users/{}", user.user), go_json(&user), false)
            .await
        {
            Err(e) if e.code() == Some(code::NODE_EXIST) => {
                Err(auth_err(409, format!("User {} already exists.", user.user)).into())
            }
            other => other.map(|_| user),
        }
    }

    async fn update_user(&self, change: User) -> Result<User, Failure> {
        let old = match self.get_user(&change.user, true).await {
            Err(Failure::Auth(e)) if e.status == 404 => {
                return Err(auth_err(404, format!("User {} doesn't exist.", change.user)).into());
            }
            other => other?,
        };
        let hash = if change.password.is_empty() {
            None
        } else {
            Some(self.hash(change.password.clone()).await?)
        };
        let merged = old.merge(&change, hash)?;
        if merged == old {
            return Err(auth_err(
                400,
                "User not updated. Use grant/revoke/password to update the user.",
            )
            .into());
        }
        self.set(&format!("/users/{}", change.user), go_json(&merged), true)
            .await?;
        Ok(merged)
    }

    async fn check_password(&self, user: &User, password: String) -> bool {
        let hash = user.password.clone();
        bcrypt_work(self.server, move || {
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    async fn enable(&self) -> Result<(), Failure> {
        if self.enabled() {
            return Err(auth_err(409, "already enabled").into());
        }
        if self.get_user("root", true).await.is_err() {
            return Err(auth_err(409, "No root user available, please create one").into());
        }
        if self.get_role(GUEST_ROLE, true).await.is_err() {
            self.create_role(guest_role()).await?;
        }
        self.set("/enabled", "true".into(), true).await
    }

    async fn disable(&self) -> Result<(), Failure> {
        if !self.enabled() {
            return Err(auth_err(409, "already disabled").into());
        }
        self.set("/enabled", "false".into(), true).await
    }

    async fn create_role(&self, role: Role) -> Result<(), Failure> {
        if role.role == ROOT_ROLE {
            return Err(auth_err(
                403,
                format!("Cannot modify role {}: is root role.", role.role),
            )
            .into());
        }
        match self
            .set(&format!("/roles/{}", role.role), go_json(&role), false)
            .await
        {
            Err(e) if e.code() == Some(code::NODE_EXIST) => {
                Err(auth_err(409, format!("Role {} already exists.", role.role)).into())
            }
            other => other,
        }
    }

    async fn update_role(&self, change: Role) -> Result<Role, Failure> {
        if change.role == ROOT_ROLE {
            return Err(auth_err(
                403,
                format!("Cannot modify role {}: is root role.", change.role),
            )
            .into());
        }
        let old = match self.get_role(&change.role, true).await {
            Err(Failure::Auth(e)) if e.status == 404 => {
                return Err(auth_err(404, format!("Role {} doesn't exist.", change.role)).into());
            }
            other => other?,
        };
        let merged = old.merge(&change)?;
        if merged == old {
            return Err(auth_err(
                400,
                "Role not updated. Use grant/revoke to update the role.",
            )
            .into());
        }
        self.set(&format!("/roles/{}", change.role), go_json(&merged), true)
            .await?;
        Ok(merged)
    }

    /// The user a request is, by Basic auth; `None` when absent or wrong.
    async fn basic_auth_user(&self, authorization: &str) -> Option<User> {
        let (scheme, encoded) = authorization.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, password) = decoded.split_once(':')?;
        let user = self.get_user(name, false).await.ok()?;
        self.check_password(&user, password.to_string())
            .await
            .then_some(user)
    }

    /// The first user named by a Common Name of the client's certificate chain.
    async fn cert_user(&self, names: &Option<ClientCertChainNames>) -> Option<User> {
        for name in names.as_ref()?.0.iter() {
            if let Ok(user) = self.get_user(name, false).await {
                return Some(user);
            }
        }
        None
    }
}

/// bcrypt off the serving threads, a few at a time (the server's bcrypt slots).
async fn bcrypt_work<R: Send + 'static>(
    server: &EtcdServer,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Failure> {
    let _slot = server
        .bcrypt_slots
        .acquire()
        .await
        .map_err(|_| Failure::Server(ServerError::Stopped))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::Server(ServerError::Internal(e.to_string())))
}

fn client_cert_auth(server: &EtcdServer) -> bool {
    server.cfg.client_tls.info.client_cert_auth
}

/// etcd's hasRootAccess: with auth on, only a user with the root role.
async fn root_access(server: &Arc<EtcdServer>, asker: &Asker) -> bool {
    let store = AuthStore { server };
    if !store.enabled() {
        return true;
    }
    let user = match &asker.authorization {
        None if client_cert_auth(server) => store.cert_user(&asker.cert_names).await,
        None => None,
        Some(auth) => store.basic_auth_user(auth).await,
    };
    user.is_some_and(|u| u.is_root())
}

/// etcd's hasWriteRootAccess: reads are free, changes need root.
pub async fn root_write_access(server: &Arc<EtcdServer>, asker: &Asker) -> bool {
    !asker.write || root_access(server, asker).await
}

/// etcd's hasKeyPrefixAccess for `key` (the path under `/v2/keys`).
pub async fn key_access(
    server: &Arc<EtcdServer>,
    asker: &Asker,
    key: &str,
    recursive: bool,
) -> bool {
    let store = AuthStore { server };
    if !store.enabled() {
        return true;
    }
    let user = match &asker.authorization {
        None => {
            let by_cert = if client_cert_auth(server) {
                store.cert_user(&asker.cert_names).await
            } else {
                None
            };
            match by_cert {
                Some(user) => user,
                None => {
                    return match store.get_role(GUEST_ROLE, false).await {
                        Ok(guest) => guest.has_key_access(key, asker.write),
                        Err(_) => false,
                    };
                }
            }
        }
        Some(auth) => match store.basic_auth_user(auth).await {
            Some(user) => user,
            None => return false,
        },
    };
    for name in user.roles() {
        let Ok(role) = store.get_role(name, false).await else {
            continue;
        };
        let allowed = if recursive {
            role.has_recursive_access(key, asker.write)
        } else {
            role.has_key_access(key, asker.write)
        };
        if allowed {
            return true;
        }
    }
    false
}

pub fn no_auth() -> Response {
    http_error(StatusCode::UNAUTHORIZED, "Insufficient credentials")
}

pub fn routes() -> Router<Arc<EtcdServer>> {
    Router::new()
        .route("/v2/auth/roles", any(roles))
        .route("/v2/auth/roles/", any(roles))
        .route("/v2/auth/roles/{*rest}", any(roles))
        .route("/v2/auth/users", any(users))
        .route("/v2/auth/users/", any(users))
        .route("/v2/auth/users/{*rest}", any(users))
        .route("/v2/auth/enable", any(enable))
}

fn with_cluster_id(server: &EtcdServer, mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        response.headers_mut().insert("x-etcd-cluster-id", v);
    }
    response
}

fn json_line(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn empty_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "").into_response()
}

/// The resource name of `/v2/auth/<kind>/<name>`: `Some(None)` for the collection itself,
/// `None` for a deeper path (etcd's "Invalid path").
fn resource_name(uri_path: &str, kind: &str) -> Option<Option<String>> {
    let decoded = super::decoded_path_lossy(uri_path);
    let sub = crate::v2::path::clean(&decoded["/v2/auth".len().min(decoded.len())..]);
    let pieces: Vec<&str> = sub.split('/').collect();
    match pieces.len() {
        2 => Some(None),
        3 if pieces[1] == kind => Some(Some(pieces[2].to_string())),
        _ => None,
    }
}

fn invalid_path() -> Response {
    http_error(StatusCode::BAD_REQUEST, "Invalid path")
}

/// A PUT body, decoded as Go's json.Decoder reads the first value of it.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request) -> Option<T> {
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .ok()?;
    serde_json::Deserializer::from_slice(&body)
        .into_iter::<T>()
        .next()?
        .ok()
}

/// etcd's checks before a user or role request, in its order: the path (`Some(name)` for one
/// resource, `None` for the collection), the method, root access. `Err` is the refusal.
async fn admit(
    server: &Arc<EtcdServer>,
    path: &str,
    method: &Method,
    asker: Asker,
    kind: &str,
) -> Result<Option<String>, Box<Response>> {
    let Some(name) = resource_name(path, kind) else {
        return Err(Box::new(invalid_path()));
    };
    let (ok_method, allowed) = match name {
        None => (*method == Method::GET, "GET"),
        Some(_) => (
            matches!(*method, Method::GET | Method::PUT | Method::DELETE),
            "GET,PUT,DELETE",
        ),
    };
    if !ok_method {
        return Err(Box::new(method_not_allowed(allowed)));
    }
    if !root_access(server, &asker).await {
        return Err(Box::new(no_auth()));
    }
    Ok(name)
}

async fn roles(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    let (path, method) = (req.uri().path().to_string(), req.method().clone());
    let name = match admit(&server, &path, &method, Asker::of(&req), "roles").await {
        Ok(name) => name,
        Err(refusal) => return *refusal,
    };
    let store = AuthStore { server: &server };
    let response = match name {
        None => match list_roles(&store).await {
            Ok(body) => json_line(StatusCode::OK, body),
            Err(e) => e.into_response(),
        },
        Some(name) => match *req.method() {
            Method::GET => match store.get_role(&name, false).await {
                Ok(role) => json_line(StatusCode::OK, go_json(&role)),
                Err(e) => e.into_response(),
            },
            Method::PUT => put_role(&store, &name, req).await,
            _ => {
                let result = if name == ROOT_ROLE {
                    Err(auth_err(403, format!("Cannot modify role {name}: is root role.")).into())
                } else {
                    match store.delete(&format!("/roles/{name}")).await {
                        Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => {
                            Err(auth_err(404, format!("Role {name} doesn't exist.")).into())
                        }
                        other => other,
                    }
                };
                match result {
                    Ok(()) => empty_json(),
                    Err(e) => e.into_response(),
                }
            }
        },
    };
    with_cluster_id(&server, response)
}

async fn list_roles(store: &AuthStore<'_>) -> Result<String, Failure> {
    let mut roles = Vec::new();
    for name in store.all_roles().await? {
        roles.push(store.get_role(&name, false).await?);
    }
    #[derive(serde::Serialize)]
    struct Roles {
        roles: Vec<Role>,
    }
    Ok(go_json(&Roles { roles }))
}

async fn put_role(store: &AuthStore<'_>, name: &str, req: Request) -> Response {
    let Some(role) = read_json::<Role>(req).await else {
        return http_error(StatusCode::BAD_REQUEST, "Invalid JSON in request body.");
    };
    if role.role != name {
        return http_error(
            StatusCode::BAD_REQUEST,
            "Role JSON name does not match the name in the URL",
        );
    }
    let no_change =
        |p: &Option<crate::v2::auth::Permissions>| p.as_ref().is_none_or(|p| p.is_empty());
    if no_change(&role.grant) && no_change(&role.revoke) {
        match store.create_role(role.clone()).await {
            Ok(()) => json_line(StatusCode::CREATED, go_json(&role)),
            Err(e) => e.into_response(),
        }
    } else {
        if !role.permissions.is_empty() {
            return http_error(
                StatusCode::BAD_REQUEST,
                "Role JSON contains both permissions and grant/revoke",
            );
        }
        match store.update_role(role).await {
            Ok(out) => json_line(StatusCode::OK, go_json(&out)),
            Err(e) => e.into_response(),
        }
    }
}

/// A user with its roles spelled out (etcd's userWithRoles).
#[derive(serde::Serialize)]
struct UserWithRoles {
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Role>,
}

async fn users(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    let (path, method) = (req.uri().path().to_string(), req.method().clone());
    let name = match admit(&server, &path, &method, Asker::of(&req), "users").await {
        Ok(name) => name,
        Err(refusal) => return *refusal,
    };
    let store = AuthStore { server: &server };
    let response = match name {
        None => match list_users(&store).await {
            Ok(body) => json_line(StatusCode::OK, body),
            Err(e) => e.into_response(),
        },
        Some(name) => match *req.method() {
            Method::GET => match user_with_roles(&store, &name, true).await {
                Ok(u) => json_line(StatusCode::OK, go_json(&u)),
                Err(e) => e.into_response(),
            },
            Method::PUT => put_user(&store, &name, req).await,
            _ => match delete_user(&store, &name).await {
                Ok(()) => empty_json(),
                Err(e) => e.into_response(),
            },
        },
    };
    with_cluster_id(&server, response)
}

async fn user_with_roles(
    store: &AuthStore<'_>,
    name: &str,
    strict: bool,
) -> Result<UserWithRoles, Failure> {
    let user = store.get_user(name, false).await?;
    let mut roles = Vec::new();
    for role in user.roles() {
        match store.get_role(role, false).await {
            Ok(r) => roles.push(r),
            Err(e) if strict => return Err(e),
            Err(_) => {}
        }
    }
    Ok(UserWithRoles {
        user: user.user,
        roles,
    })
}

async fn list_users(store: &AuthStore<'_>) -> Result<String, Failure> {
    let mut users = Vec::new();
    for name in store.names("/users/").await? {
        users.push(user_with_roles(store, &name, false).await?);
    }
    #[derive(serde::Serialize)]
    struct Users {
        users: Option<Vec<UserWithRoles>>,
    }
    Ok(go_json(&Users {
        users: (!users.is_empty()).then_some(users),
    }))
}

async fn put_user(store: &AuthStore<'_>, name: &str, req: Request) -> Response {
    let Some(user) = read_json::<User>(req).await else {
        return http_error(StatusCode::BAD_REQUEST, "Invalid JSON in request body.");
    };
    if user.user != name {
        return http_error(
            StatusCode::BAD_REQUEST,
            "User JSON name does not match the name in the URL",
        );
    }
    let empty = |l: &Option<Vec<String>>| l.as_deref().unwrap_or_default().is_empty();
    let result = if empty(&user.grant) && empty(&user.revoke) {
        if !empty(&user.roles) {
            store.create_user(user).await.map(|u| (u, false))
        } else {
            match store.get_user(&user.user, true).await {
                Ok(_) => store.update_user(user).await.map(|u| (u, false)),
                Err(_) => store.create_user(user).await.map(|u| (u, true)),
            }
        }
    } else if !empty(&user.roles) {
        return http_error(
            StatusCode::BAD_REQUEST,
            "User JSON contains both roles and grant/revoke",
        );
    } else {
        store.update_user(user).await.map(|u| (u, false))
    };
    match result {
        Ok((mut out, created)) => {
            out.password.clear();
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_line(status, go_json(&out))
        }
        Err(e) => e.into_response(),
    }
}

async fn delete_user(store: &AuthStore<'_>, name: &str) -> Result<(), Failure> {
    if store.enabled() && name == "root" {
        return Err(auth_err(403, "Cannot delete root user while auth is enabled.").into());
    }
    match store.delete(&format!("/users/{name}")).await {
        Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => {
            Err(auth_err(404, format!("User {name} does not exist")).into())
        }
        other => other,
    }
}

async fn enable(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if !matches!(*req.method(), Method::GET | Method::PUT | Method::DELETE) {
        return method_not_allowed("GET,PUT,DELETE");
    }
    let asker = Asker::of(&req);
    if !root_write_access(&server, &asker).await {
        return no_auth();
    }
    let store = AuthStore { server: &server };
    let response = match *req.method() {
        Method::GET => json_line(
            StatusCode::OK,
            format!("{{\"enabled\":{}}}", store.enabled()),
        ),
        Method::PUT => match store.enable().await {
            Ok(()) => empty_json(),
            Err(e) => e.into_response(),
        },
        _ => match store.disable().await {
            Ok(()) => empty_json(),
            Err(e) => e.into_response(),
        },
    };
    with_cluster_id(&server, response)
}
