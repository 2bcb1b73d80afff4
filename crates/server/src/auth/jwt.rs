//! JWT tokens (`--auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`), as etcd
//! issues them: signed claims `{"username", "revision", "exp"}`, verified by any member with
//! the public key (or the shared secret for HS*), nothing kept in memory. A member given only
//! a public key verifies tokens but cannot issue them, as etcd's verify-only mode.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::AuthError;
use super::tokens::AuthInfo;

/// What `--auth-token` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Simple,
    Jwt(JwtOptions),
}

#[derive(Clone, Debug, PartialEq)]
pub struct JwtOptions {
    pub sign_method: String,
    pub pub_key: Option<PathBuf>,
    pub priv_key: Option<PathBuf>,
    pub ttl: Duration,
}

/// etcd's default JWT lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// Parses `--auth-token`: `simple`, or `jwt` with comma-separated `key=value` options.
pub fn parse_token_option(spec: &str) -> Result<TokenKind, String> {
    let mut parts = spec.split(',');
    match parts.next().unwrap_or_default() {
        "simple" => Ok(TokenKind::Simple),
        "jwt" => {
            let mut opts = JwtOptions {
                sign_method: String::new(),
                pub_key: None,
                priv_key: None,
                ttl: DEFAULT_TTL,
            };
            for part in parts.filter(|p| !p.is_empty()) {
                let (key, value) = part.split_once('=').ok_or_else(|| {
                    format!(
                        "auth: invalid auth options (--auth-token option {part:?} has no value)"
                    )
                })?;
                match key {
                    "sign-method" => opts.sign_method = value.to_string(),
                    "pub-key" => opts.pub_key = Some(PathBuf::from(value)),
                    "priv-key" => opts.priv_key = Some(PathBuf::from(value)),
                    "ttl" => {
                        opts.ttl = parse_go_duration(value).ok_or_else(|| {
                            format!("auth: invalid auth options (bad --auth-token ttl {value:?})")
                        })?
                    }
                    other => {
                        return Err(format!(
                            "auth: invalid auth options (unknown --auth-token option {other:?}; \
                             known: sign-method, pub-key, priv-key, ttl)"
                        ));
                    }
                }
            }
            Ok(TokenKind::Jwt(opts))
        }
        other => Err(format!(
            "auth: invalid auth options (unknown token type {other:?}; use simple or jwt)"
        )),
    }
}

/// Go's `time.ParseDuration` for the units a TTL uses (`300s`, `5m`, `1h30m`, `1.5h`).
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

pub struct JwtTokens {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl JwtTokens {
    /// Loads the keys; every problem is a clear error naming the option and the file.
    pub fn new(opts: &JwtOptions) -> Result<JwtTokens, String> {
        let algorithm = Algorithm::from_str(&opts.sign_method).map_err(|_| {
            format!(
                "auth: invalid auth signature method {:?} (supported: HS256, HS384, HS512, \
                 RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)",
                opts.sign_method
            )
        })?;
        let read = |what: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| {
                        format!("auth: cannot read the JWT {what} {}: {e}", p.display())
                    })
                })
                .transpose()
        };
        let private = read("priv-key", &opts.priv_key)?;
        let public = read("pub-key", &opts.pub_key)?;
        let key_error = |what: &str, e: jsonwebtoken::errors::Error| {
            format!("auth: the JWT {what} is not a {algorithm:?} key: {e}")
        };
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // A shared secret: etcd reads it from priv-key.
                let secret = private.or(public).ok_or(
                    "auth: missing key data (HS* sign methods need priv-key, the shared secret)",
                )?;
                (
                    Some(EncodingKey::from_secret(&secret).map_err(|e| key_error("secret", e))?),
                    DecodingKey::from_secret(&secret).map_err(|e| key_error("secret", e))?,
                )
            }
            _ => {
                let public = public.ok_or("auth: missing key data (pub-key is required)")?;
                let decoding = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&public),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&public),
                    _ => DecodingKey::from_rsa_pem(&public),
                }
                .map_err(|e| key_error("pub-key", e))?;
                let encoding = private
                    .map(|private| {
                        match algorithm {
                            Algorithm::ES256 | Algorithm::ES384 => {
                                EncodingKey::from_ec_pem(&private)
                            }
                            Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
                            _ => EncodingKey::from_rsa_pem(&private),
                        }
                        .map_err(|e| key_error("priv-key", e))
                    })
                    .transpose()?;
                (encoding, decoding)
            }
        };
        let tokens = JwtTokens {
            algorithm,
            encoding,
            decoding,
            ttl: opts.ttl,
        };
        // A key pair that does not match fails here, not at the first Authenticate.
        if tokens.encoding.is_some() {
            let probe = tokens
                .assign("probe", 1)
                .map_err(|e| format!("auth: cannot sign a JWT: {e}"))?;
            if tokens.info(&probe).is_none() {
                return Err("auth: public and private keys don't match".to_string());
            }
        }
        Ok(tokens)
    }

    /// A signed token for `user` at auth `revision`, valid for the TTL.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, AuthError> {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs();
        self.sign(user, revision, exp)
    }

    /// A signed token expiring at `exp` (Unix seconds).
    fn sign(&self, user: &str, revision: u64, exp: u64) -> Result<String, AuthError> {
        let Some(key) = &self.encoding else {
            return Err(AuthError::VerifyOnly);
        };
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|_| AuthError::InvalidAuthToken)
    }

    /// The user and revision of a valid, unexpired token signed with our key.
    pub fn info(&self, token: &str) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(AuthInfo {
            user: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("secret");
        std::fs::write(&path, b"a shared secret of enough length").unwrap();
        path
    }

    #[test]
    fn the_option_string_parses_as_etcds() {
        assert_eq!(parse_token_option("simple").unwrap(), TokenKind::Simple);
        let TokenKind::Jwt(opts) =
            parse_token_option("jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256,ttl=10m")
                .unwrap()
        else {
            panic!("jwt expected");
        };
        assert_eq!(opts.sign_method, "RS256");
        assert_eq!(opts.pub_key.unwrap(), PathBuf::from("a.pub"));
        assert_eq!(opts.ttl, Duration::from_secs(600));
        assert!(parse_token_option("bogus").is_err());
        assert!(parse_token_option("jwt,colour=blue").is_err());
        assert!(parse_token_option("jwt,ttl=soon").is_err());
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn hs256_tokens_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let opts = JwtOptions {
            sign_method: "HS256".into(),
            pub_key: None,
            priv_key: Some(secret_file(dir.path())),
            ttl: Duration::from_secs(60),
        };
        let tokens = JwtTokens::new(&opts).unwrap();
        let token = tokens.assign("alice", 7).unwrap();
        assert_eq!(
            tokens.info(&token),
            Some(AuthInfo {
                user: "alice".into(),
                revision: 7
            })
        );
        let mut forged = token.clone();
        forged.push('x');
        assert_eq!(tokens.info(&forged), None);
        assert_eq!(tokens.info("not.a.token"), None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = tokens.sign("alice", 7, now - 1).unwrap();
        assert_eq!(tokens.info(&expired), None, "expired tokens are refused");
        let other_key = dir.path().join("other");
        std::fs::write(&other_key, b"another shared secret, not ours").unwrap();
        let other = JwtTokens::new(&JwtOptions {
            priv_key: Some(other_key),
            ..opts
        })
        .unwrap();
        assert_eq!(tokens.info(&other.assign("alice", 7).unwrap()), None);
    }

    #[test]
    fn es256_signs_with_the_private_key_and_verifies_with_the_public_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (private, public) = (dir.path().join("ec.key"), dir.path().join("ec.pub"));
        std::fs::write(&private, key.serialize_pem()).unwrap();
        std::fs::write(&public, key.public_key_pem()).unwrap();
        let signer = JwtTokens::new(&JwtOptions {
            sign_method: "ES256".into(),
            pub_key: Some(public.clone()),
            priv_key: Some(private),
            ttl: Duration::from_secs(60),
        })
        .unwrap();
        let verifier = JwtTokens::new(&JwtOptions {
            sign_method: "ES256".into(),
            pub_key: Some(public),
            priv_key: None,
            ttl: Duration::from_secs(60),
        })
        .unwrap();
        let token = signer.assign("bob", 3).unwrap();
        assert_eq!(verifier.info(&token).unwrap().user, "bob");
        assert_eq!(verifier.assign("bob", 3), Err(AuthError::VerifyOnly));
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = JwtOptions {
            sign_method: "RS256".into(),
            pub_key: Some(dir.path().join("nope.pub")),
            priv_key: None,
            ttl: DEFAULT_TTL,
        };
        let e = JwtTokens::new(&missing).err().unwrap();
        assert!(e.contains("cannot read the JWT pub-key"), "{e}");
        let e = JwtTokens::new(&JwtOptions {
            sign_method: "XS999".into(),
            ..missing.clone()
        })
        .err()
        .unwrap();
        assert!(e.contains("invalid auth signature method"), "{e}");
        let garbage = dir.path().join("garbage.pub");
        std::fs::write(&garbage, b"not a key").unwrap();
        let e = JwtTokens::new(&JwtOptions {
            pub_key: Some(garbage),
            ..missing
        })
        .err()
        .unwrap();
        assert!(e.contains("is not a RS256 key"), "{e}");
    }
}
