//! auth enable/disable, user and role commands.

use etcd_api::authpb;
use etcd_api::etcdserverpb::*;

use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::{Cx, prompt};

const ERR_ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

pub async fn enable(cx: Cx) -> i32 {
    if !cx.args.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "auth enable command does not accept any arguments",
        );
    }
    let c = cx.client().await;
    let mut a = c.client.auth.clone();
    loop {
        match crate::call!(c, a.auth_enable(AuthEnableRequest {})) {
            Ok(_) => break,
            Err(e) if e == ERR_ROOT_ROLE_NOT_EXIST => {
                let r = crate::call!(
                    c,
                    a.role_add(AuthRoleAddRequest {
                        name: "root".into(),
                    })
                );
                if let Err(e) = r {
                    exit::fail(EXIT_ERROR, &e);
                }
                let g = AuthUserGrantRoleRequest {
                    user: "root".into(),
                    role: "root".into(),
                };
                if let Err(e) = crate::call!(c, a.user_grant_role(g)) {
                    exit::fail(EXIT_ERROR, &e);
                }
            }
            Err(e) => exit::fail(EXIT_ERROR, &e),
        }
    }
    println!("Authentication Enabled");
    0
}

pub async fn disable(cx: Cx) -> i32 {
    if !cx.args.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "auth disable command does not accept any arguments",
        );
    }
    let c = cx.client().await;
    let mut a = c.client.auth.clone();
    crate::call!(c, a.auth_disable(AuthDisableRequest {}))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    println!("Authentication Disabled");
    0
}

fn read_password_interactive(name: &str) -> String {
    let p1 = prompt::ask_password(&format!("Password of {name}: "))
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &format!("failed to ask password: {e}")));
    if p1.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "empty password");
    }
    let p2 = prompt::ask_password(&format!("Type password of {name} again for confirmation: "))
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &format!("failed to ask password: {e}")));
    if p1 != p2 {
        exit::fail(EXIT_BAD_ARGS, "given passwords are different");
    }
    p1
}

pub async fn user(cx: Cx, sub: &str) -> i32 {
    let args = cx.args.clone();
    let need = |n: usize, msg: &str| {
        if args.len() != n {
            exit::fail(EXIT_BAD_ARGS, msg);
        }
    };
    match sub {
        "add" => need(1, "user add command requires user name as its argument"),
        "delete" => need(1, "user delete command requires user name as its argument"),
        "get" => need(1, "user get command requires user name as its argument"),
        "list" => need(0, "user list command requires no arguments"),
        "passwd" => need(1, "user passwd command requires user name as its argument"),
        "grant-role" => need(
            2,
            "user grant command requires user name and role name as its argument",
        ),
        _ => need(
            2,
            "user revoke-role requires user name and role name as its argument",
        ),
    }
    let p = &cx.printer;
    match sub {
        "add" => {
            let mut user = args[0].clone();
            let mut password = String::new();
            let no_password = cx.flags.bool("no-password");
            if !no_password {
                let from_flag = cx.flags.str("new-user-password");
                if !from_flag.is_empty() {
                    password = from_flag;
                } else if let Some((u, pw)) = args[0].split_once(':') {
                    user = u.to_string();
                    password = pw.to_string();
                    if user.is_empty() {
                        exit::fail(EXIT_BAD_ARGS, "empty user name is not allowed");
                    }
                } else if !cx.flags.bool("interactive") {
                    password = prompt::scan_word();
                } else {
                    password = read_password_interactive(&args[0]);
                }
            }
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let req = AuthUserAddRequest {
                name: user.clone(),
                password,
                options: Some(authpb::UserAddOptions { no_password }),
                ..Default::default()
            };
            let r = crate::call!(c, a.user_add(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(&format!("User {user} created\n"), &r.header, &r, true);
        }
        "delete" => {
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let req = AuthUserDeleteRequest {
                name: args[0].clone(),
            };
            let r =
                crate::call!(c, a.user_delete(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(&format!("User {} deleted\n", args[0]), &r.header, &r, true);
        }
        "get" => {
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let name = args[0].clone();
            let r = crate::call!(c, a.user_get(AuthUserGetRequest { name: name.clone() }))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            if cx.flags.bool("detail") {
                println!("User: {name}");
                for role in &r.roles {
                    println!();
                    let rr = crate::call!(c, a.role_get(AuthRoleGetRequest { role: role.clone() }))
                        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
                    p.role_get(role, &rr.header, &rr.perm, &rr);
                }
            } else {
                p.user_get(&name, &r.header, &r.roles, &r);
            }
        }
        "list" => {
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let r = crate::call!(c, a.user_list(AuthUserListRequest {}))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.names("users", &r.header, &r.users, &r, false);
        }
        "passwd" => {
            let password = if !cx.flags.bool("interactive") {
                prompt::scan_word()
            } else {
                read_password_interactive(&args[0])
            };
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let req = AuthUserChangePasswordRequest {
                name: args[0].clone(),
                password,
                ..Default::default()
            };
            let r = crate::call!(c, a.user_change_password(req))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only("Password updated\n", &r.header, &r, true);
        }
        "grant-role" => {
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let req = AuthUserGrantRoleRequest {
                user: args[0].clone(),
                role: args[1].clone(),
            };
            let r = crate::call!(c, a.user_grant_role(req))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(
                &format!("Role {} is granted to user {}\n", args[1], args[0]),
                &r.header,
                &r,
                true,
            );
        }
        _ => {
            let c = cx.client().await;
            let mut a = c.client.auth.clone();
            let req = AuthUserRevokeRoleRequest {
                name: args[0].clone(),
                role: args[1].clone(),
            };
            let r = crate::call!(c, a.user_revoke_role(req))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(
                &format!("Role {} is revoked from user {}\n", args[1], args[0]),
                &r.header,
                &r,
                true,
            );
        }
    }
    0
}

fn perm_type(s: &str) -> i32 {
    match s.to_uppercase().as_str() {
        "READ" => 0,
        "WRITE" => 1,
        "READWRITE" => 2,
        _ => exit::fail(EXIT_BAD_ARGS, &format!("invalid permission type: {s}")),
    }
}

fn range_end_from_perm_flags(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<Vec<u8>, String> {
    if args.len() == 1 {
        if prefix {
            if from_key {
                return Err("--from-key and --prefix flags are mutually exclusive".into());
            }
            return Ok(etcd_client::prefix_end(&crate::rawarg::bytes(&args[0])));
        }
        if from_key {
            return Ok(vec![0]);
        }
        return Ok(Vec::new());
    }
    if prefix {
        return Err("unexpected endkey argument with --prefix flag".into());
    }
    if from_key {
        return Err("unexpected endkey argument with --from-key flag".into());
    }
    Ok(crate::rawarg::bytes(&args[1]))
}

fn perm_range(args: &[String], prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    if args[0].is_empty() {
        if prefix && from_key {
            exit::fail(
                EXIT_BAD_ARGS,
                "--from-key and --prefix flags are mutually exclusive",
            );
        }
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return (vec![0], end);
    }
    let end = range_end_from_perm_flags(args, prefix, from_key)
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &e));
    (crate::rawarg::bytes(&args[0]), end)
}

pub async fn role(cx: Cx, sub: &str) -> i32 {
    let args = cx.args.clone();
    let p = &cx.printer;
    match sub {
        "add" | "delete" | "get" if args.len() != 1 => exit::fail(
            EXIT_BAD_ARGS,
            &format!("role {sub} command requires role name as its argument"),
        ),
        "list" if !args.is_empty() => {
            exit::fail(EXIT_BAD_ARGS, "role list command requires no arguments")
        }
        "grant-permission" if args.len() < 3 => exit::fail(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ),
        "revoke-permission" if args.len() < 2 => exit::fail(
            EXIT_BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ),
        _ => {}
    }
    let prefix = cx.flags.bool("prefix");
    let from_key = cx.flags.bool("from-key");
    // Argument errors come before the connection, as in etcdctl.
    let grant = if sub == "grant-permission" {
        let pt = perm_type(&args[1]);
        let (key, end) = perm_range(&args[2..], prefix, from_key);
        Some((pt, key, end))
    } else {
        None
    };
    let revoke = if sub == "revoke-permission" {
        Some(perm_range(&args[1..], prefix, from_key))
    } else {
        None
    };
    let c = cx.client().await;
    let mut a = c.client.auth.clone();
    match sub {
        "add" => {
            let r = crate::call!(
                c,
                a.role_add(AuthRoleAddRequest {
                    name: args[0].clone(),
                })
            )
            .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(&format!("Role {} created\n", args[0]), &r.header, &r, true);
        }
        "delete" => {
            let r = crate::call!(
                c,
                a.role_delete(AuthRoleDeleteRequest {
                    role: args[0].clone(),
                })
            )
            .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(&format!("Role {} deleted\n", args[0]), &r.header, &r, true);
        }
        "get" => {
            let r = crate::call!(
                c,
                a.role_get(AuthRoleGetRequest {
                    role: args[0].clone(),
                })
            )
            .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.role_get(&args[0], &r.header, &r.perm, &r);
        }
        "list" => {
            let r = crate::call!(c, a.role_list(AuthRoleListRequest {}))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.names("roles", &r.header, &r.roles, &r, true);
        }
        "grant-permission" => {
            let (pt, key, end) = grant.unwrap_or_default();
            let req = AuthRoleGrantPermissionRequest {
                name: args[0].clone(),
                perm: Some(authpb::Permission {
                    perm_type: pt,
                    key,
                    range_end: end,
                }),
            };
            let r = crate::call!(c, a.role_grant_permission(req))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            p.header_only(&format!("Role {} updated\n", args[0]), &r.header, &r, true);
        }
        _ => {
            let (key, end) = revoke.unwrap_or_default();
            let req = AuthRoleRevokePermissionRequest {
                role: args[0].clone(),
                key,
                range_end: end.clone(),
            };
            let r = crate::call!(c, a.role_revoke_permission(req))
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            let end_s = String::from_utf8_lossy(&end).into_owned();
            let text = if end.is_empty() {
                format!(
                    "Permission of key {} is revoked from role {}\n",
                    args[1], args[0]
                )
            } else if end != [0] {
                format!(
                    "Permission of range [{}, {end_s}) is revoked from role {}\n",
                    args[1], args[0]
                )
            } else {
                format!(
                    "Permission of range [{}, <open ended> is revoked from role {}\n",
                    args[1], args[0]
                )
            };
            p.header_only(&text, &r.header, &r, true);
        }
    }
    0
}
