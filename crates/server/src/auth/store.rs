//! The replicated auth state: users, roles, whether auth is on, and the auth revision, with
//! etcd 3.4's rules for every change. Pure and deterministic: passwords arrive already hashed
//! (the member that takes the request hashes it), so every member applies the same bytes.
//!
//! The revision counts changes, as etcd's: every successful change bumps it (enabling does
//! not; granting a role a user already has changes nothing), and a token or a request made
//! under an older revision is refused once it moved (`AuthOldRevision`).

use std::collections::BTreeMap;

use etcd_api::authpb::{Permission, Role, User, UserAddOptions};
use etcd_api::internalpb::AuthStoreState;

use super::error::AuthError;
use super::perms::UserPerms;

/// The user and the role that may do everything, and without which auth cannot be enabled.
pub const ROOT: &str = "root";

#[derive(Clone, Debug, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Each user's merged permissions, rebuilt whenever users or roles change.
    perms: BTreeMap<String, UserPerms>,
}

impl Default for AuthStore {
    /// A new store, as etcd makes it: disabled, at revision 1.
    fn default() -> AuthStore {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: BTreeMap::new(),
        }
    }
}

impl AuthStore {
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn commit(&mut self) {
        self.revision += 1;
        self.refresh_perms();
    }

    fn refresh_perms(&mut self) {
        self.perms = self
            .users
            .iter()
            .map(|(name, user)| {
                let perms = user
                    .roles
                    .iter()
                    .filter_map(|r| self.roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPerms::merge(perms))
            })
            .collect();
    }

    /// AuthEnable: needs `root` holding the `root` role. Enabling twice is not an error.
    pub fn enable(&mut self) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(())
    }

    /// AuthDisable; disabling a disabled store changes nothing.
    pub fn disable(&mut self) {
        if self.enabled {
            self.enabled = false;
            self.commit();
        }
    }

    /// UserAdd with the password already hashed (`None` with `no_password`).
    pub fn user_add(
        &mut self,
        name: &str,
        hashed_password: Option<&str>,
        no_password: bool,
    ) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if no_password {
                Vec::new()
            } else {
                hashed_password.unwrap_or_default().as_bytes().to_vec()
            },
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        self.users.insert(name.to_string(), user);
        self.commit();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(AuthError::UserNotFound);
        }
        self.commit();
        Ok(())
    }

    pub fn user_change_password(&mut self, name: &str, hashed: &str) -> Result<(), AuthError> {
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        user.password = hashed.as_bytes().to_vec();
        self.commit();
        Ok(())
    }

    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if !self.users.contains_key(name) {
            return Err(AuthError::UserNotFound);
        }
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            // Already granted: etcd ignores it and the revision stays.
            Ok(_) => Ok(()),
            Err(at) => {
                user.roles.insert(at, role.to_string());
                self.commit();
                Ok(())
            }
        }
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit();
        Ok(())
    }

    /// The user's roles, sorted.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, AuthError> {
        self.users
            .get(name)
            .map(|u| u.roles.clone())
            .ok_or(AuthError::UserNotFound)
    }

    /// Every user name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_add(&mut self, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        self.roles.insert(
            name.to_string(),
            Role {
                name: name.as_bytes().to_vec(),
                key_permission: Vec::new(),
            },
        );
        self.commit();
        Ok(())
    }

    /// RoleDelete: the role goes, and every user loses it.
    pub fn role_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(AuthError::RoleNotFound);
        }
        for user in self.users.values_mut() {
            user.roles.retain(|r| r != name);
        }
        self.commit();
        Ok(())
    }

    /// The role's permissions, sorted by key.
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, AuthError> {
        self.roles
            .get(name)
            .map(|r| r.key_permission.clone())
            .ok_or(AuthError::RoleNotFound)
    }

    /// Every role name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// RoleGrantPermission: a permission on the same range replaces the type of the old one.
    pub fn role_grant_permission(&mut self, name: &str, perm: Permission) -> Result<(), AuthError> {
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        match role
            .key_permission
            .iter_mut()
            .find(|p| p.key == perm.key && p.range_end == perm.range_end)
        {
            Some(existing) => existing.perm_type = perm.perm_type,
            None => {
                role.key_permission.push(perm);
                // Stable, by key only, as etcd's sort of its permissions.
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.commit();
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != key || p.range_end != range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.commit();
        Ok(())
    }

    /// The stored hash to check a password against, for Authenticate; the auth revision the
    /// token will carry. Any failure is the same `AuthFailed`, so a caller cannot tell a
    /// missing user from a wrong password.
    pub fn password_hash(&self, name: &str) -> Result<(String, u64), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::AuthFailed);
        }
        let hash = String::from_utf8(user.password.clone()).map_err(|_| AuthError::AuthFailed)?;
        Ok((hash, self.revision))
    }

    /// Whether `user` (authenticated at `auth_revision`) may read (or write) the request's
    /// keys. Everything is allowed while auth is off.
    pub fn check_range(
        &self,
        user: &str,
        auth_revision: u64,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        self.check_user(user, auth_revision)?;
        let u = self.users.get(user).ok_or(AuthError::PermissionDenied)?;
        if has_root_role(u) {
            return Ok(());
        }
        let perms = self.perms.get(user).ok_or(AuthError::PermissionDenied)?;
        let granted = if write { &perms.write } else { &perms.read };
        if granted.covers(key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` may administer the cluster (holds the root role). Allowed while auth
    /// is off.
    pub fn check_admin(&self, user: &str, auth_revision: u64) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        self.check_user(user, auth_revision)?;
        let u = self.users.get(user).ok_or(AuthError::UserNotFound)?;
        if has_root_role(u) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    fn check_user(&self, user: &str, auth_revision: u64) -> Result<(), AuthError> {
        if user.is_empty() || auth_revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if auth_revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        Ok(())
    }

    /// The saved form (backend metadata; carried by snapshots with the backend).
    pub fn to_state(&self) -> AuthStoreState {
        AuthStoreState {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    pub fn from_state(state: AuthStoreState) -> AuthStore {
        let mut store = AuthStore {
            enabled: state.enabled,
            revision: state.revision.max(1),
            users: state
                .users
                .into_iter()
                .map(|u| (String::from_utf8_lossy(&u.name).into_owned(), u))
                .collect(),
            roles: state
                .roles
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
                .collect(),
            perms: BTreeMap::new(),
        };
        store.refresh_perms();
        store
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::authpb::permission::Type as PermType;

    fn with_root() -> AuthStore {
        let mut s = AuthStore::default();
        s.user_add(ROOT, Some("hash"), false).unwrap();
        s.user_grant_role(ROOT, ROOT).unwrap();
        s
    }

    fn perm(kind: PermType, key: &str, range_end: &str) -> Permission {
        Permission {
            perm_type: kind as i32,
            key: key.as_bytes().to_vec(),
            range_end: range_end.as_bytes().to_vec(),
        }
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let mut s = AuthStore::default();
        assert_eq!(s.enable(), Err(AuthError::RootUserNotExist));
        s.user_add(ROOT, Some("h"), false).unwrap();
        assert_eq!(s.enable(), Err(AuthError::RootRoleNotExist));
        s.user_grant_role(ROOT, ROOT).unwrap();
        let revision = s.revision();
        s.enable().unwrap();
        assert!(s.is_enabled());
        assert_eq!(
            s.revision(),
            revision,
            "enabling does not move the revision"
        );
        s.enable().unwrap();
        assert_eq!(s.user_delete(ROOT), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(
            s.user_revoke_role(ROOT, ROOT),
            Err(AuthError::InvalidAuthMgmt)
        );
        assert_eq!(s.role_delete(ROOT), Err(AuthError::InvalidAuthMgmt));
        s.disable();
        assert!(!s.is_enabled());
        assert_eq!(s.revision(), revision + 1);
    }

    #[test]
    fn users_and_roles_follow_etcds_rules() {
        let mut s = AuthStore::default();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.user_add("", Some("h"), false), Err(AuthError::UserEmpty));
        s.user_add("alice", Some("h"), false).unwrap();
        assert_eq!(
            s.user_add("alice", Some("h"), false),
            Err(AuthError::UserAlreadyExist)
        );
        assert_eq!(s.role_add(""), Err(AuthError::RoleEmpty));
        s.role_add("r").unwrap();
        assert_eq!(s.role_add("r"), Err(AuthError::RoleAlreadyExist));
        assert_eq!(s.user_grant_role("bob", "r"), Err(AuthError::UserNotFound));
        assert_eq!(
            s.user_grant_role("alice", "x"),
            Err(AuthError::RoleNotFound)
        );
        s.user_grant_role("alice", "r").unwrap();
        let revision = s.revision();
        s.user_grant_role("alice", "r").unwrap();
        assert_eq!(
            s.revision(),
            revision,
            "a grant already made changes nothing"
        );
        s.user_grant_role("alice", ROOT).unwrap();
        assert_eq!(s.user_get("alice").unwrap(), ["r", "root"]);
        assert_eq!(
            s.user_revoke_role("alice", "x"),
            Err(AuthError::RoleNotGranted)
        );
        s.role_delete("r").unwrap();
        assert_eq!(
            s.user_get("alice").unwrap(),
            ["root"],
            "a deleted role leaves its users"
        );
        assert_eq!(s.role_delete("r"), Err(AuthError::RoleNotFound));
        assert_eq!(s.user_delete("bob"), Err(AuthError::UserNotFound));
        assert_eq!(
            s.user_change_password("bob", "h"),
            Err(AuthError::UserNotFound)
        );
        assert_eq!(s.user_list(), ["alice"]);
    }

    #[test]
    fn permissions_are_kept_by_key_and_replaced_on_the_same_range() {
        let mut s = AuthStore::default();
        assert_eq!(
            s.role_grant_permission("r", perm(PermType::Read, "a", "")),
            Err(AuthError::RoleNotFound)
        );
        s.role_add("r").unwrap();
        s.role_grant_permission("r", perm(PermType::Read, "b", "c"))
            .unwrap();
        s.role_grant_permission("r", perm(PermType::Read, "a", ""))
            .unwrap();
        s.role_grant_permission("r", perm(PermType::Write, "b", "c"))
            .unwrap();
        let perms = s.role_get("r").unwrap();
        assert_eq!(
            perms,
            [
                perm(PermType::Read, "a", ""),
                perm(PermType::Write, "b", "c")
            ]
        );
        assert_eq!(
            s.role_revoke_permission("r", b"b", b""),
            Err(AuthError::PermissionNotGranted)
        );
        s.role_revoke_permission("r", b"b", b"c").unwrap();
        assert_eq!(s.role_get("r").unwrap(), [perm(PermType::Read, "a", "")]);
    }

    #[test]
    fn checks_follow_the_users_roles_and_the_revision() {
        let mut s = with_root();
        s.user_add("u", Some("h"), false).unwrap();
        s.role_add("reader").unwrap();
        s.role_grant_permission("reader", perm(PermType::Read, "k", "l"))
            .unwrap();
        s.user_grant_role("u", "reader").unwrap();
        // Off: everything is allowed, even with no user.
        assert_eq!(s.check_range("", 0, b"x", b"", true), Ok(()));
        s.enable().unwrap();
        let rev = s.revision();
        assert_eq!(s.check_range("u", rev, b"k1", b"", false), Ok(()));
        assert_eq!(
            s.check_range("u", rev, b"k1", b"", true),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check_range("u", rev, b"m", b"", false),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check_range("", 0, b"k1", b"", false),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(s.check_range(ROOT, rev, b"anything", &[0], true), Ok(()));
        assert_eq!(s.check_admin("u", rev), Err(AuthError::PermissionDenied));
        assert_eq!(s.check_admin(ROOT, rev), Ok(()));
        // Revoking moves the revision: a token from before is old.
        s.role_revoke_permission("reader", b"k", b"l").unwrap();
        assert_eq!(
            s.check_range("u", rev, b"k1", b"", false),
            Err(AuthError::AuthOldRevision)
        );
        assert_eq!(
            s.check_range("u", s.revision(), b"k1", b"", false),
            Err(AuthError::PermissionDenied)
        );
    }

    #[test]
    fn passwords_are_refused_alike_for_unknown_users_and_no_password_users() {
        let mut s = with_root();
        s.user_add("np", None, true).unwrap();
        assert_eq!(s.password_hash(ROOT), Err(AuthError::AuthNotEnabled));
        s.enable().unwrap();
        assert_eq!(s.password_hash(ROOT).unwrap().0, "hash");
        assert_eq!(s.password_hash("np"), Err(AuthError::AuthFailed));
        assert_eq!(s.password_hash("nobody"), Err(AuthError::AuthFailed));
    }

    #[test]
    fn the_saved_form_round_trips() {
        let mut s = with_root();
        s.role_add("r").unwrap();
        s.role_grant_permission("r", perm(PermType::Readwrite, "a", "b"))
            .unwrap();
        s.user_grant_role(ROOT, "r").unwrap();
        s.enable().unwrap();
        let back = AuthStore::from_state(s.to_state());
        assert_eq!(back, s);
    }
}
