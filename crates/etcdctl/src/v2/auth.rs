//! The v2 auth API (`/v2/auth/...`) as etcd's client calls it, and `auth enable|disable`,
//! `user add|get|list|remove|grant|revoke|passwd`, `role add|get|list|remove|grant|revoke`.

use std::time::Instant;

use super::client::{Action, Client, ClientError, HttpResponse};
use super::gourl::{self, GoUrl};
use super::json::{self, Dv, Field, StructTy, Ty};
use super::{
    Ctx, Exit, R, eprint_arg, eprint_line, must_new_client, out, out_arg, out_line,
    username_password,
};
use crate::json::{Obj, string};

static RW_PERMISSION: StructTy = StructTy {
    name: "rwPermission",
    go: "client.rwPermission",
    fields: &[
        Field {
            key: "read",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
        Field {
            key: "write",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
    ],
};
static PERMISSIONS: StructTy = StructTy {
    name: "Permissions",
    go: "client.Permissions",
    fields: &[Field {
        key: "kv",
        ty: Ty::Struct(&RW_PERMISSION),
    }],
};
static PERMISSIONS_TY: Ty = Ty::Struct(&PERMISSIONS);
static ROLE: StructTy = StructTy {
    name: "Role",
    go: "client.Role",
    fields: &[
        Field {
            key: "role",
            ty: Ty::Str,
        },
        Field {
            key: "permissions",
            ty: Ty::Struct(&PERMISSIONS),
        },
        Field {
            key: "grant",
            ty: Ty::Ptr(&PERMISSIONS_TY, "*client.Permissions"),
        },
        Field {
            key: "revoke",
            ty: Ty::Ptr(&PERMISSIONS_TY, "*client.Permissions"),
        },
    ],
};
static ROLE_TY: Ty = Ty::Struct(&ROLE);
static USER: StructTy = StructTy {
    name: "User",
    go: "client.User",
    fields: &[
        Field {
            key: "user",
            ty: Ty::Str,
        },
        Field {
            key: "password",
            ty: Ty::Str,
        },
        Field {
            key: "roles",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
        Field {
            key: "grant",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
        Field {
            key: "revoke",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
    ],
};
static USER_ROLES: StructTy = StructTy {
    name: "UserRoles",
    go: "client.UserRoles",
    fields: &[
        Field {
            key: "user",
            ty: Ty::Str,
        },
        Field {
            key: "roles",
            ty: Ty::Slice(&ROLE_TY, "[]client.Role"),
        },
    ],
};
static USER_LIST_ENTRY: StructTy = StructTy {
    name: "userListEntry",
    go: "client.userListEntry",
    fields: &[
        Field {
            key: "user",
            ty: Ty::Str,
        },
        Field {
            key: "roles",
            ty: Ty::Slice(&ROLE_TY, "[]client.Role"),
        },
    ],
};
static USER_LIST_ENTRY_TY: Ty = Ty::Struct(&USER_LIST_ENTRY);
static USER_LIST: StructTy = StructTy {
    name: "",
    go: "struct { Users []client.userListEntry \"json:\\\"users\\\"\" }",
    fields: &[Field {
        key: "users",
        ty: Ty::Slice(&USER_LIST_ENTRY_TY, "[]client.userListEntry"),
    }],
};
static ROLE_LIST: StructTy = StructTy {
    name: "",
    go: "struct { Roles []client.Role \"json:\\\"roles\\\"\" }",
    fields: &[Field {
        key: "roles",
        ty: Ty::Slice(&ROLE_TY, "[]client.Role"),
    }],
};
static AUTH_ERROR: StructTy = StructTy {
    name: "authError",
    go: "client.authError",
    fields: &[Field {
        key: "message",
        ty: Ty::Str,
    }],
};

fn auth_url(ep: &GoUrl, action: &str, name: &str) -> GoUrl {
    let mut u = ep.clone();
    u.path = if name.is_empty() {
        gourl::join(&[&ep.path, "/v2/auth", action])
    } else {
        gourl::join(&[&ep.path, "/v2/auth", action, name])
    };
    u
}

/// An answer that is not a success, as `authError` (its message), or the JSON error.
fn auth_error(resp: &HttpResponse) -> ClientError {
    let (d, err) = json::decode(&resp.body, &Ty::Struct(&AUTH_ERROR), false);
    ClientError::other(err.unwrap_or_else(|| d.field(0).str().to_string()))
}

async fn call(
    hc: &mut Client,
    act: Action,
    ok: &[u16],
    deadline: Option<Instant>,
) -> Result<HttpResponse, ClientError> {
    let resp = hc.do_action(&act, deadline).await?;
    if !ok.contains(&resp.status) {
        return Err(auth_error(&resp));
    }
    Ok(resp)
}

fn json_action(
    method: &'static str,
    action: &'static str,
    name: &str,
    body: Option<String>,
) -> Action {
    let name = name.to_string();
    let act = Action::new(method, move |ep| auth_url(ep, action, &name));
    match body {
        Some(b) => act.body("application/json", b.into_bytes()),
        None => act,
    }
}

/// A string as Go marshals it: bytes that are not UTF-8 become U+FFFD.
fn js(s: &str) -> String {
    string(&String::from_utf8_lossy(&crate::rawarg::bytes(s)))
}

fn strs_json(v: Option<&[String]>) -> String {
    match v {
        None => "null".to_string(),
        Some(v) => format!(
            "[{}]",
            v.iter().map(|s| js(s)).collect::<Vec<_>>().join(",")
        ),
    }
}

/// The client's `User` as `json.Marshal` writes it.
fn user_json(
    user: &str,
    password: &str,
    grant: Option<&[String]>,
    revoke: Option<&[String]>,
) -> String {
    let mut o = Obj::new().raw("user", &js(user));
    if !password.is_empty() {
        o = o.raw("password", &js(password));
    }
    o = o.raw("roles", "null");
    if let Some(g) = grant.filter(|g| !g.is_empty()) {
        o = o.raw("grant", &strs_json(Some(g)));
    }
    if let Some(r) = revoke.filter(|r| !r.is_empty()) {
        o = o.raw("revoke", &strs_json(Some(r)));
    }
    o.done()
}

fn perms_json(read: Option<&[String]>, write: Option<&[String]>) -> String {
    format!(
        "{{\"kv\":{{\"read\":{},\"write\":{}}}}}",
        strs_json(read),
        strs_json(write)
    )
}

/// The client's `Role` as `json.Marshal` writes it.
fn role_json(role: &str, grant: Option<String>, revoke: Option<String>) -> String {
    Obj::new()
        .raw("role", &js(role))
        .raw("permissions", &perms_json(None, None))
        .raw_opt("grant", grant)
        .raw_opt("revoke", revoke)
        .done()
}

/// `AuthRoleAPI.GetRole` and the grant/revoke calls (`modRole`).
async fn mod_role(
    hc: &mut Client,
    act: Action,
    deadline: Option<Instant>,
) -> Result<Dv, ClientError> {
    let resp = call(hc, act, &[200], deadline).await?;
    let (d, err) = json::decode(&resp.body, &ROLE_TY, false);
    match err {
        Some(e) => Err(ClientError::other(e)),
        None => Ok(d),
    }
}

async fn get_role(
    hc: &mut Client,
    name: &str,
    deadline: Option<Instant>,
) -> Result<Dv, ClientError> {
    mod_role(hc, json_action("GET", "roles", name, None), deadline).await
}

/// `AuthUserAPI` calls that answer a user (`modUser`): the user's name and roles, read as
/// etcd's client reads them (roles as names, else from role objects, after whatever the
/// first attempt left).
async fn mod_user(
    hc: &mut Client,
    act: Action,
    deadline: Option<Instant>,
) -> Result<(String, Vec<String>), ClientError> {
    let resp = call(hc, act, &[200], deadline).await?;
    let (user, err) = json::decode(&resp.body, &Ty::Struct(&USER), false);
    let Some(err) = err else {
        return Ok((user.field(0).str().to_string(), user.field(2).strs()));
    };
    let (ur, urerr) = json::decode(&resp.body, &Ty::Struct(&USER_ROLES), false);
    if urerr.is_some() {
        return Err(ClientError::other(err));
    }
    let mut roles = user.field(2).strs();
    roles.extend(
        ur.field(1)
            .items()
            .iter()
            .map(|r| r.field(0).str().to_string()),
    );
    Ok((ur.field(0).str().to_string(), roles))
}

fn fail(e: &ClientError) -> Exit {
    eprint_line(&e.to_string());
    Exit(1)
}

fn fail_msg(msg: &str) -> Exit {
    eprint_line(msg);
    Exit(1)
}

/// etcdctl's `mustNewAuthAPI` (and the user and role ones): the client, and the endpoints
/// once more under `--debug`.
async fn auth_client(ctx: &Ctx) -> Result<Client, Exit> {
    let hc = must_new_client(ctx).await?;
    if hc.debug {
        eprint_line(&format!("Cluster-Endpoints: {}", hc.endpoints().join(", ")));
    }
    Ok(hc)
}

pub async fn enable_disable(ctx: &Ctx, enable: bool) -> R {
    if !ctx.args().is_empty() {
        return Err(fail_msg("No arguments accepted"));
    }
    let mut hc = auth_client(ctx).await?;
    let method = if enable { "PUT" } else { "DELETE" };
    let act = Action::new(method, |ep| auth_url(ep, "enable", ""));
    call(&mut hc, act, &[200, 201], ctx.deadline())
        .await
        .map_err(|e| fail(&e))?;
    out_line(if enable {
        "Authentication Enabled"
    } else {
        "Authentication Disabled"
    });
    Ok(())
}

/// etcdctl's `mustUserAPIAndName` (and the role one): exactly one argument, then the client.
async fn client_and_name(ctx: &Ctx, what: &str) -> Result<(Client, String), Exit> {
    if ctx.args().len() != 1 {
        return Err(fail_msg(&format!("Please provide a {what}")));
    }
    let hc = auth_client(ctx).await?;
    Ok((hc, ctx.args()[0].clone()))
}

/// The `--total-timeout` of each command starts where etcdctl starts it: after the client
/// is made, except for `user grant`/`revoke` (before, so the sync counts), and before the
/// password prompts of `user add` and `user passwd` (the typing counts).
pub async fn user(ctx: &Ctx, sub: &str) -> R {
    match sub {
        "list" => {
            if !ctx.args().is_empty() {
                return Err(fail_msg("No arguments accepted"));
            }
            let mut hc = auth_client(ctx).await?;
            let deadline = ctx.deadline();
            let act = json_action("GET", "users", "", None);
            let mut act = act;
            act.content_type = Some("application/json");
            let resp = call(&mut hc, act, &[200], deadline)
                .await
                .map_err(|e| fail(&e))?;
            let (d, err) = json::decode(&resp.body, &Ty::Struct(&USER_LIST), false);
            if let Some(e) = err {
                return Err(fail_msg(&e));
            }
            for u in d.field(0).items() {
                out_line(u.field(0).str());
            }
            Ok(())
        }
        "add" => {
            let (mut hc, arg) = client_and_name(ctx, "username").await?;
            let deadline = ctx.deadline();
            let name = arg.split(':').next().unwrap_or("").to_string();
            let (_, pass) = username_password("New password: ", &arg).map_err(|e| {
                eprint_line(&format!("Error reading password: {e}"));
                Exit(1)
            })?;
            let body = user_json(&name, &pass, None, None);
            call(
                &mut hc,
                json_action("PUT", "users", &name, Some(body)),
                &[200, 201],
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out_arg(&format!("User {name} created\n"));
            Ok(())
        }
        "remove" => {
            let (mut hc, name) = client_and_name(ctx, "username").await?;
            let deadline = ctx.deadline();
            call(
                &mut hc,
                json_action("DELETE", "users", &name, None),
                &[200, 201],
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out_arg(&format!("User {name} removed\n"));
            Ok(())
        }
        "passwd" => {
            let (mut hc, name) = client_and_name(ctx, "username").await?;
            let deadline = ctx.deadline();
            let pass = crate::prompt::speakeasy_ask("New password: ").map_err(|e| {
                eprint_line(&format!("Error reading password: {e}"));
                Exit(1)
            })?;
            let body = user_json(&name, &pass, None, None);
            mod_user(
                &mut hc,
                json_action("PUT", "users", &name, Some(body)),
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out("Password updated\n");
            Ok(())
        }
        "grant" | "revoke" => {
            let roles = ctx.slice("roles");
            if roles.is_empty() {
                return Err(fail_msg("No roles specified; please use `--roles`"));
            }
            let deadline = ctx.deadline();
            let (mut hc, name) = client_and_name(ctx, "username").await?;
            let body = if sub == "grant" {
                user_json(&name, "", Some(&roles), None)
            } else {
                user_json(&name, "", None, Some(&roles))
            };
            mod_user(
                &mut hc,
                json_action("PUT", "users", &name, Some(body)),
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out_arg(&format!("User {name} updated\n"));
            Ok(())
        }
        "get" => {
            let (mut hc, name) = client_and_name(ctx, "username").await?;
            let deadline = ctx.deadline();
            let (user, roles) =
                mod_user(&mut hc, json_action("GET", "users", &name, None), deadline)
                    .await
                    .map_err(|e| fail(&e))?;
            out(&format!("User: {user}\nRoles: {}\n", roles.join(" ")));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Go's `reflect.DeepEqual` on two decoded roles.
fn same_role(a: &Dv, b: &Dv) -> bool {
    a == b
}

/// Each command's `--total-timeout` starts once the client is made, as etcdctl's.
pub async fn role(ctx: &Ctx, sub: &str) -> R {
    match sub {
        "list" => {
            if !ctx.args().is_empty() {
                return Err(fail_msg("No arguments accepted"));
            }
            let mut hc = auth_client(ctx).await?;
            let deadline = ctx.deadline();
            let mut act = json_action("GET", "roles", "", None);
            act.content_type = Some("application/json");
            let resp = hc.do_action(&act, deadline).await.map_err(|e| fail(&e))?;
            if resp.status != 200 {
                return Err(fail_msg(&format!("unexpected status code {}", resp.status)));
            }
            let (d, err) = json::decode(&resp.body, &Ty::Struct(&ROLE_LIST), false);
            if let Some(e) = err {
                return Err(fail_msg(&e));
            }
            for r in d.field(0).items() {
                out_line(r.field(0).str());
            }
            Ok(())
        }
        "add" => {
            let (mut hc, name) = client_and_name(ctx, "role name").await?;
            let deadline = ctx.deadline();
            if get_role(&mut hc, &name, deadline).await.is_ok() {
                eprint_arg(&format!("Role {name} already exists\n"));
                return Err(Exit(1));
            }
            let body = role_json(&name, None, None);
            call(
                &mut hc,
                json_action("PUT", "roles", &name, Some(body)),
                &[200, 201],
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out_arg(&format!("Role {name} created\n"));
            Ok(())
        }
        "remove" => {
            let (mut hc, name) = client_and_name(ctx, "role name").await?;
            let deadline = ctx.deadline();
            call(
                &mut hc,
                json_action("DELETE", "roles", &name, None),
                &[200, 201],
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            out_arg(&format!("Role {name} removed\n"));
            Ok(())
        }
        "get" => {
            let (mut hc, name) = client_and_name(ctx, "role name").await?;
            let deadline = ctx.deadline();
            let role = get_role(&mut hc, &name, deadline)
                .await
                .map_err(|e| fail(&e))?;
            let kv = role.field(1).field(0);
            let mut s = format!("Role: {}\nKV Read:\n", role.field(0).str());
            for p in kv.field(0).strs() {
                s.push_str(&format!("\t{p}\n"));
            }
            s.push_str("KV Write:\n");
            for p in kv.field(1).strs() {
                s.push_str(&format!("\t{p}\n"));
            }
            out(&s);
            Ok(())
        }
        "grant" | "revoke" => {
            let grant = sub == "grant";
            let path = ctx.str("path");
            if path.is_empty() {
                return Err(fail_msg("No path specified; please use `--path`"));
            }
            let canonical = gourl::canonical_url_path(&path);
            if canonical != path {
                eprint_arg(&format!(
                    "Not canonical path; please use `--path={canonical}`\n"
                ));
                return Err(Exit(1));
            }
            let (read, write, rw) = (ctx.bool("read"), ctx.bool("write"), ctx.bool("readwrite"));
            if [read, write, rw].iter().filter(|b| **b).count() != 1 {
                return Err(fail_msg(
                    "Please specify exactly one of --read, --write or --readwrite",
                ));
            }
            let (mut hc, name) = client_and_name(ctx, "role name").await?;
            let deadline = ctx.deadline();
            let current = get_role(&mut hc, &name, deadline)
                .await
                .map_err(|e| fail(&e))?;
            let prefixes = [path];
            let perms = perms_json(
                (read || rw).then_some(&prefixes[..]),
                (write || rw).then_some(&prefixes[..]),
            );
            let body = if grant {
                role_json(&name, Some(perms), None)
            } else {
                role_json(&name, None, Some(perms))
            };
            let new = mod_role(
                &mut hc,
                json_action("PUT", "roles", &name, Some(body)),
                deadline,
            )
            .await
            .map_err(|e| fail(&e))?;
            if same_role(&new, &current) {
                out(if grant {
                    "Role unchanged; already granted"
                } else {
                    "Role unchanged; already revoked"
                });
            }
            out_arg(&format!("Role {name} updated\n"));
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_marshal_as_gos() {
        assert_eq!(
            user_json("root", "pw", None, None),
            r#"{"user":"root","password":"pw","roles":null}"#
        );
        assert_eq!(
            user_json("u", "", Some(&["a".to_string()]), None),
            r#"{"user":"u","roles":null,"grant":["a"]}"#
        );
        let perms = perms_json(Some(&["/x".to_string()]), None);
        assert_eq!(
            role_json("r", Some(perms), None),
            r#"{"role":"r","permissions":{"kv":{"read":null,"write":null}},"grant":{"kv":{"read":["/x"],"write":null}}}"#
        );
    }

    #[test]
    fn user_roles_read_as_etcds_client_reads_them() {
        let body = br#"{"user":"root","roles":[{"role":"root","permissions":{"kv":{"read":["/*"],"write":["/*"]}}}]}"#;
        let (user, err) = json::decode(body, &Ty::Struct(&USER), false);
        assert!(err.is_some());
        let (ur, urerr) = json::decode(body, &Ty::Struct(&USER_ROLES), false);
        assert!(urerr.is_none());
        let mut roles = user.field(2).strs();
        roles.extend(
            ur.field(1)
                .items()
                .iter()
                .map(|r| r.field(0).str().to_string()),
        );
        assert_eq!(roles.join(" "), " root");
    }
}
