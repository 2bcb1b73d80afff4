//! Simple tokens (`--auth-token simple`, etcd's default): random strings a member hands out
//! on Authenticate, replicated through Raft so every member accepts them, kept in memory only
//! (a restarted member forgets them and clients authenticate again, as with etcd), and valid
//! for `--auth-token-ttl` after their last use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens kept before expired ones are swept on the next insert, and the most ever kept: a
/// storm of Authenticate calls cannot grow memory without limit (the oldest go first).
const SWEEP_AT: usize = 16 * 1024;
const TOKENS_MAX: usize = 256 * 1024;

/// Who a token speaks for, and the auth revision it was issued at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

struct Entry {
    info: AuthInfo,
    expires: Instant,
}

pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Entry>>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for the Authenticate applied at Raft `index`, etcd's shape:
    /// 16 random letters, a dot, the index.
    pub fn generate(index: u64) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let random: String = (0..16)
            .map(|_| LETTERS[rand::random_range(0..LETTERS.len())] as char)
            .collect();
        format!("{random}.{index}")
    }

    pub fn assign(&self, token: String, info: AuthInfo, now: Instant) {
        let mut tokens = self.lock();
        if tokens.len() >= SWEEP_AT {
            tokens.retain(|_, e| e.expires > now);
        }
        if tokens.len() >= TOKENS_MAX
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(
            token,
            Entry {
                info,
                expires: now + self.ttl,
            },
        );
    }

    /// The token's user and revision, if it is known and unexpired; using it extends it.
    pub fn info(&self, token: &str, now: Instant) -> Option<AuthInfo> {
        let mut tokens = self.lock();
        let entry = tokens.get_mut(token)?;
        if entry.expires <= now {
            tokens.remove(token);
            return None;
        }
        entry.expires = now + self.ttl;
        Some(entry.info.clone())
    }

    /// A deleted user, or one whose password changed, loses its tokens.
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, e| e.info.user != user);
    }

    /// Auth was disabled: every token goes.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str) -> AuthInfo {
        AuthInfo {
            user: user.to_string(),
            revision: 3,
        }
    }

    #[test]
    fn tokens_expire_after_their_last_use() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        let t0 = Instant::now();
        tokens.assign("a.1".into(), info("u"), t0);
        assert_eq!(
            tokens.info("a.1", t0 + Duration::from_secs(9)),
            Some(info("u"))
        );
        // Used at 9 s: valid until 19 s.
        assert_eq!(
            tokens.info("a.1", t0 + Duration::from_secs(18)),
            Some(info("u"))
        );
        assert_eq!(tokens.info("a.1", t0 + Duration::from_secs(29)), None);
        assert_eq!(tokens.info("nope", t0), None);
    }

    #[test]
    fn a_users_tokens_go_with_it() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        let now = Instant::now();
        tokens.assign("a.1".into(), info("u"), now);
        tokens.assign("b.2".into(), info("v"), now);
        tokens.invalidate_user("u");
        assert_eq!(tokens.info("a.1", now), None);
        assert_eq!(tokens.info("b.2", now), Some(info("v")));
        tokens.clear();
        assert_eq!(tokens.info("b.2", now), None);
    }

    #[test]
    fn generated_tokens_have_etcds_shape() {
        let token = SimpleTokens::generate(42);
        let (random, index) = token.split_once('.').unwrap();
        assert_eq!(random.len(), 16);
        assert!(random.chars().all(|c| c.is_ascii_alphabetic()));
        assert_eq!(index, "42");
        assert_ne!(SimpleTokens::generate(42), token);
    }
}
