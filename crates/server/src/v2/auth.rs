//! etcd 3.4's v2 auth model (v2auth): users and roles kept as JSON in the v2 store under
//! `/2/users/<name>` and `/2/roles/<name>`, `/2/enabled`, the built-in `root` and `guest`
//! roles, how a user or role changes by grant and revoke, and how a role's `kv` patterns
//! (`/foo`, `/foo/*`) grant access to a key. Pure; the HTTP side is `v2http::auth`.

use serde::{Deserialize, Serialize};

pub const PERMS_PREFIX: &str = "/2";
pub const ROOT_ROLE: &str = "root";
pub const GUEST_ROLE: &str = "guest";

/// An auth failure as etcd words it (`auth: ...`), with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: u16,
    pub message: String,
}

pub fn auth_err(status: u16, message: impl std::fmt::Display) -> AuthError {
    AuthError {
        status,
        message: format!("auth: {message}"),
    }
}

/// A user as stored and as the API shows it (Go's field order; `roles` is `null` when
/// none were ever given, as etcd's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RwPermission {
    #[serde(default)]
    pub read: Option<Vec<String>>,
    #[serde(default)]
    pub write: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub kv: RwPermission,
}

impl Permissions {
    pub fn is_empty(&self) -> bool {
        self.kv.read.as_deref().unwrap_or_default().is_empty()
            && self.kv.write.as_deref().unwrap_or_default().is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Permissions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Permissions>,
}

fn everything() -> Permissions {
    Permissions {
        kv: RwPermission {
            read: Some(vec!["/*".into()]),
            write: Some(vec!["/*".into()]),
        },
    }
}

/// The built-in root role: everything.
pub fn root_role() -> Role {
    Role {
        role: ROOT_ROLE.into(),
        permissions: everything(),
        ..Role::default()
    }
}

/// The guest role created when auth is first enabled: everything, until an admin narrows it.
pub fn guest_role() -> Role {
    Role {
        role: GUEST_ROLE.into(),
        permissions: everything(),
        ..Role::default()
    }
}

impl User {
    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or_default()
    }

    /// The root user always has the root role.
    pub fn with_root_role(mut self) -> User {
        if self.user == "root" && !self.roles().iter().any(|r| r == ROOT_ROLE) {
            self.roles
                .get_or_insert_with(Vec::new)
                .push(ROOT_ROLE.into());
        }
        self
    }

    pub fn is_root(&self) -> bool {
        self.roles().iter().any(|r| r == ROOT_ROLE)
    }

    /// etcd's User.merge: `change`'s grants and revokes applied to this user's roles
    /// (duplicates and unknown revokes refused), and its password if it has one
    /// (`new_hash`, already hashed).
    pub fn merge(&self, change: &User, new_hash: Option<String>) -> Result<User, AuthError> {
        if self.user != change.user {
            return Err(auth_err(
                409,
                format!(
                    "Merging user data with conflicting usernames: {} {}",
                    self.user, change.user
                ),
            ));
        }
        let mut roles: Vec<String> = self.roles().to_vec();
        for g in change.grant.as_deref().unwrap_or_default() {
            if roles.contains(g) {
                return Err(auth_err(
                    409,
                    format!("Granting duplicate role {g} for user {}", change.user),
                ));
            }
            roles.push(g.clone());
        }
        for r in change.revoke.as_deref().unwrap_or_default() {
            let Some(at) = roles.iter().position(|x| x == r) else {
                return Err(auth_err(
                    409,
                    format!("Revoking ungranted role {r} for user {}", change.user),
                ));
            };
            roles.remove(at);
        }
        roles.sort();
        Ok(User {
            user: self.user.clone(),
            password: new_hash.unwrap_or_else(|| self.password.clone()),
            roles: go_set(roles),
            grant: None,
            revoke: None,
        })
    }
}

/// A Go set's sorted values: never `nil`, so `[]` when empty.
fn go_set(values: Vec<String>) -> Option<Vec<String>> {
    Some(values)
}

fn granted(
    current: &Option<Vec<String>>,
    add: &Option<Vec<String>>,
    what: &str,
) -> Result<Option<Vec<String>>, AuthError> {
    let mut out: Vec<String> = current.clone().unwrap_or_default();
    for p in add.as_deref().unwrap_or_default() {
        if out.contains(p) {
            return Err(auth_err(
                409,
                format!("Granting duplicate {what} permission {p}"),
            ));
        }
        out.push(p.clone());
    }
    out.sort();
    Ok(go_set(out))
}

fn revoked(current: &[String], remove: &Option<Vec<String>>) -> Option<Vec<String>> {
    let remove = remove.as_deref().unwrap_or_default();
    let mut out: Vec<String> = current
        .iter()
        .filter(|p| !remove.contains(p))
        .cloned()
        .collect();
    out.sort();
    go_set(out)
}

impl Role {
    /// etcd's Role.merge: `change`'s grant, then its revoke (revoking what was never
    /// granted is ignored).
    pub fn merge(&self, change: &Role) -> Result<Role, AuthError> {
        if self.role != change.role {
            return Err(auth_err(
                409,
                format!(
                    "Merging role with conflicting names: {} {}",
                    self.role, change.role
                ),
            ));
        }
        let mut perms = self.permissions.clone();
        if let Some(grant) = &change.grant {
            perms = Permissions {
                kv: RwPermission {
                    read: granted(&perms.kv.read, &grant.kv.read, "read")?,
                    write: granted(&perms.kv.write, &grant.kv.write, "write")?,
                },
            };
        }
        if let Some(revoke) = &change.revoke {
            perms = Permissions {
                kv: RwPermission {
                    read: revoked(
                        perms.kv.read.as_deref().unwrap_or_default(),
                        &revoke.kv.read,
                    ),
                    write: revoked(
                        perms.kv.write.as_deref().unwrap_or_default(),
                        &revoke.kv.write,
                    ),
                },
            };
        }
        Ok(Role {
            role: self.role.clone(),
            permissions: perms,
            grant: None,
            revoke: None,
        })
    }

    fn patterns(&self, write: bool) -> &[String] {
        let list = if write {
            &self.permissions.kv.write
        } else {
            &self.permissions.kv.read
        };
        list.as_deref().unwrap_or_default()
    }

    /// Access to exactly `key`: a pattern equal to it, or ending in `*` and a prefix of it.
    pub fn has_key_access(&self, key: &str, write: bool) -> bool {
        self.role == ROOT_ROLE
            || self
                .patterns(write)
                .iter()
                .any(|p| match p.strip_suffix('*') {
                    Some(prefix) => key.starts_with(prefix),
                    None => p == key,
                })
    }

    /// Access to `key` and everything under it: only a `*` pattern covering it.
    pub fn has_recursive_access(&self, key: &str, write: bool) -> bool {
        self.role == ROOT_ROLE
            || self.patterns(write).iter().any(|p| {
                p.strip_suffix('*')
                    .is_some_and(|prefix| key.starts_with(prefix))
            })
    }
}

/// JSON as Go's encoder writes it: serde_json's, with `<`, `>`, `&` and U+2028/U+2029
/// escaped (they can only occur inside strings).
pub fn go_json<T: Serialize>(value: &T) -> String {
    let plain = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_roles_serialize_as_etcds() {
        let u: User = serde_json::from_str(r#"{"user":"foo", "password":"pass"}"#).unwrap();
        let shown = User {
            password: String::new(),
            ..u.clone()
        };
        assert_eq!(go_json(&shown), r#"{"user":"foo","roles":null}"#);
        let r: Role =
            serde_json::from_str(r#"{"role":"foo", "permissions": {"kv": {"read": ["/foo/*"]}}}"#)
                .unwrap();
        assert_eq!(
            go_json(&r),
            r#"{"role":"foo","permissions":{"kv":{"read":["/foo/*"],"write":null}}}"#
        );
        let change: User = serde_json::from_str(r#"{"user": "foo", "grant": ["foo"]}"#).unwrap();
        let merged = u.merge(&change, None).unwrap();
        assert_eq!(merged.roles(), ["foo"]);
        let again = merged.merge(&change, None).unwrap_err();
        assert_eq!(
            again.message,
            "auth: Granting duplicate role foo for user foo"
        );
        assert_eq!(again.status, 409);
    }

    #[test]
    fn patterns_grant_keys_and_prefixes() {
        let r: Role = serde_json::from_str(
            r#"{"role":"r","permissions":{"kv":{"read":["/foo/*","/bar"],"write":["/foo"]}}}"#,
        )
        .unwrap();
        assert!(r.has_key_access("/foo/x", false));
        assert!(r.has_key_access("/bar", false));
        assert!(!r.has_key_access("/bar/x", false));
        assert!(r.has_key_access("/foo", true));
        assert!(!r.has_key_access("/foo/x", true));
        assert!(r.has_recursive_access("/foo/", false));
        assert!(!r.has_recursive_access("/bar", false));
        assert!(root_role().has_recursive_access("/anything", true));
        let grant: Role =
            serde_json::from_str(r#"{"role":"r","grant":{"kv":{"write":["/foo"]}}}"#).unwrap();
        assert_eq!(
            r.merge(&grant).unwrap_err().message,
            "auth: Granting duplicate write permission /foo"
        );
    }
}
