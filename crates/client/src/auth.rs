//! Auth for the client: a user's credentials, the token they earn, and an interceptor that
//! puts the token into every request's `token` metadata (etcd's clients' way). A token that
//! expired or went stale (the auth store changed) is replaced by authenticating again.

use std::sync::{Arc, RwLock};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// A user and password (`--user name:password`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// `name:password`, as etcd's tools take it; `None` without the colon.
    pub fn parse(spec: &str) -> Option<Credentials> {
        let (user, password) = spec.split_once(':')?;
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// The current token, shared by every stub of one client.
#[derive(Clone, Default)]
pub struct TokenSlot(Arc<RwLock<Option<MetadataValue<Ascii>>>>);

impl TokenSlot {
    pub fn set(&self, token: &str) -> bool {
        match token.parse() {
            Ok(value) => {
                *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
                true
            }
            Err(_) => false,
        }
    }

    fn get(&self) -> Option<MetadataValue<Ascii>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Adds the slot's token, if any, to each request (one that carries its own keeps it).
#[derive(Clone, Default)]
pub struct TokenInterceptor {
    slot: Option<TokenSlot>,
}

impl TokenInterceptor {
    pub fn new(slot: Option<TokenSlot>) -> TokenInterceptor {
        TokenInterceptor { slot }
    }
}

impl Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = self.slot.as_ref().and_then(TokenSlot::get)
            && !request.metadata().contains_key("token")
        {
            request.metadata_mut().insert("token", token);
        }
        Ok(request)
    }
}

/// Whether an error means "authenticate again and retry" (clientv3's rule): the token is
/// unknown or expired, or was issued before the auth store changed.
pub fn needs_new_token(status: &tonic::Status) -> bool {
    matches!(
        status.message(),
        "etcdserver: invalid auth token" | "etcdserver: revision of auth store is old"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_as_etcds_tools() {
        assert_eq!(
            Credentials::parse("root:pa:ss"),
            Some(Credentials {
                user: "root".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(Credentials::parse("root"), None);
    }

    #[test]
    fn the_interceptor_adds_the_current_token_unless_one_is_there() {
        let slot = TokenSlot::default();
        let mut interceptor = TokenInterceptor::new(Some(slot.clone()));
        let plain = interceptor.call(tonic::Request::new(())).unwrap();
        assert!(plain.metadata().get("token").is_none());
        assert!(slot.set("abc.1"));
        let with = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(with.metadata().get("token").unwrap(), "abc.1");
        let mut own = tonic::Request::new(());
        own.metadata_mut().insert("token", "mine".parse().unwrap());
        let kept = interceptor.call(own).unwrap();
        assert_eq!(kept.metadata().get("token").unwrap(), "mine");
    }

    #[test]
    fn stale_and_invalid_tokens_ask_for_a_new_one() {
        assert!(needs_new_token(&tonic::Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(needs_new_token(&tonic::Status::invalid_argument(
            "etcdserver: revision of auth store is old"
        )));
        assert!(!needs_new_token(&tonic::Status::permission_denied(
            "etcdserver: permission denied"
        )));
    }
}
