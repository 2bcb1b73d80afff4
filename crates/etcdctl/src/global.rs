//! The global flags (also read from `ETCDCTL_*` variables), the output printer they select,
//! and the connection every command makes: endpoints, TLS, keepalive, user authentication.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use etcd_transport::TlsInfo;

use crate::cli::{Flags, Kind};
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::gofmt;
use crate::printer::{Format, Printer};

pub const ENV_PREFIX: &str = "ETCDCTL";

pub fn flag_to_env(name: &str) -> String {
    format!("{ENV_PREFIX}_{}", name.replace('-', "_").to_uppercase())
}

/// pkg/flags' `SetPflagsFromEnv` for the inherited (global) flags: a variable sets a flag
/// not given on the command line; one given both ways is fatal; unknown ones are warned about.
pub fn apply_env(flags: &mut Flags, extra_known: &[&str]) {
    let names: Vec<&'static str> = flags.inherited.clone();
    let mut used = Vec::new();
    let mut shadowed = Vec::new();
    for name in &names {
        let key = flag_to_env(name);
        if flags.changed(name) {
            shadowed.push(key);
            continue;
        }
        if let Ok(val) = std::env::var(&key)
            && !val.is_empty()
        {
            used.push(key.clone());
            // pkg/flags' error is ignored by etcdctl 3.4: the flag keeps its default.
            let _ = flags.set(name, &val);
        }
    }
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if used.contains(&k) {
            continue;
        }
        if shadowed.contains(&k) {
            let _ = std::io::Write::flush(&mut std::io::stdout());
            eprintln!(
                "{} C | pkg/flags: conflicting environment variable {} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                log_time(),
                gofmt::quote(&k)
            );
            std::process::exit(1);
        }
        let known = extra_known.iter().any(|e| flag_to_env(e) == k);
        if k.starts_with("ETCDCTL_") && !known {
            eprintln!(
                "{} W | pkg/flags: unrecognized environment variable {}={}",
                log_time(),
                k,
                v.to_string_lossy()
            );
        }
    }
}

/// capnslog's timestamp, in UTC.
pub(crate) fn log_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn printer_from(flags: &Flags) -> Printer {
    let Some(format) = Format::parse(&flags.str("write-out")) else {
        exit::fail(EXIT_BAD_FEATURE, "unsupported output format")
    };
    Printer::new(format, flags.bool("hex"))
}

/// Security settings of one client (etcdctl's `secureCfg`).
#[derive(Clone, Debug, Default)]
pub struct SecureCfg {
    pub cert: String,
    pub key: String,
    pub cacert: String,
    pub server_name: String,
    pub insecure_transport: bool,
    pub insecure_skip_verify: bool,
}

impl SecureCfg {
    pub fn from_flags(flags: &Flags) -> SecureCfg {
        for name in ["cert", "key", "cacert"] {
            if flags.changed(name) && flags.str(name).is_empty() {
                exit::fail(
                    EXIT_BAD_ARGS,
                    &format!("empty string is passed to --{name} option"),
                );
            }
        }
        let mut server_name = flags.str("discovery-srv");
        if flags.bool("insecure-discovery") {
            server_name.clear();
        }
        SecureCfg {
            cert: flags.str("cert"),
            key: flags.str("key"),
            cacert: flags.str("cacert"),
            server_name,
            insecure_transport: flags.bool("insecure-transport"),
            insecure_skip_verify: flags.bool("insecure-skip-tls-verify"),
        }
    }

    fn uses_tls(&self) -> bool {
        !self.cert.is_empty()
            || !self.key.is_empty()
            || !self.cacert.is_empty()
            || !self.server_name.is_empty()
            || !self.insecure_transport
    }

    /// The rustls configuration, or the error etcdctl exits with (code 128).
    pub fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        let info = TlsInfo {
            cert_file: (!self.cert.is_empty()).then(|| self.cert.clone().into()),
            key_file: (!self.key.is_empty()).then(|| self.key.clone().into()),
            trusted_ca_file: (!self.cacert.is_empty()).then(|| self.cacert.clone().into()),
            insecure_skip_verify: self.insecure_skip_verify,
            server_name: (!self.server_name.is_empty()).then(|| self.server_name.clone()),
            ..Default::default()
        };
        let any = self.uses_tls() || self.insecure_skip_verify;
        if !any {
            // https:// endpoints still get TLS, with the system roots.
            return info.client_config(&[b"h2"]).map(Some).or(Ok(None));
        }
        let config = info.client_config(&[b"h2"]).map_err(|e| e.to_string())?;
        if !self.insecure_skip_verify {
            return Ok(Some(config));
        }
        // etcd's auto-TLS certificates are ECDSA P-521, which ring cannot verify; Go's
        // InsecureSkipVerify still completes such handshakes, so offer the scheme and take it
        // on trust (the certificate itself is not checked anyway).
        let mut config = (*config).clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(SkipVerify(provider)));
        Ok(Some(Arc::new(config)))
    }
}

/// `--insecure-skip-tls-verify`: any certificate; handshake signatures checked where ring can.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == rustls::SignatureScheme::ECDSA_NISTP521_SHA512 {
            return Ok(rustls::client::danger::HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == rustls::SignatureScheme::ECDSA_NISTP521_SHA512 {
            return Ok(rustls::client::danger::HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        let mut schemes = self.0.signature_verification_algorithms.supported_schemes();
        schemes.push(rustls::SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuthCfg {
    pub user: String,
    pub password: String,
}

pub fn auth_from_flags(flags: &Flags) -> Option<AuthCfg> {
    let user = flags.str("user");
    let password = flags.str("password");
    if user.is_empty() {
        return None;
    }
    if !password.is_empty() {
        return Some(AuthCfg { user, password });
    }
    match user.split_once(':') {
        Some((u, p)) => Some(AuthCfg {
            user: u.to_string(),
            password: p.to_string(),
        }),
        None => {
            let password = crate::prompt::ask_password("Password: ")
                .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
            Some(AuthCfg { user, password })
        }
    }
}

/// Everything needed to open clients: etcdctl's `clientConfig`.
#[derive(Clone)]
pub struct ClientCfg {
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub secure: SecureCfg,
    pub auth: Option<AuthCfg>,
}

impl ClientCfg {
    pub fn from_flags(flags: &Flags) -> ClientCfg {
        let mut endpoints: Vec<String> = flags
            .slice("endpoints")
            .iter()
            .map(|e| e.trim().to_string())
            .collect();
        if !flags.str("discovery-srv").is_empty() {
            match crate::srv::discover(
                &flags.str("discovery-srv"),
                &flags.str("discovery-srv-name"),
                flags.bool("insecure-discovery"),
            ) {
                Ok(eps) if !eps.is_empty() => endpoints = eps,
                Ok(_) => {}
                Err(e) => exit::fail(EXIT_ERROR, &e),
            }
        }
        ClientCfg {
            endpoints,
            dial_timeout: flags.dur("dial-timeout"),
            keepalive_time: flags.dur("keepalive-time"),
            keepalive_timeout: flags.dur("keepalive-timeout"),
            secure: SecureCfg::from_flags(flags),
            auth: auth_from_flags(flags),
        }
    }

    fn endpoint_urls(&self) -> Vec<String> {
        let tls = self.secure.uses_tls();
        self.endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else if tls {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect()
    }

    /// Opens a client, waiting for a connection until `deadline` (none: for ever), then
    /// authenticates. Fails as etcdctl does: connection errors at the deadline as
    /// `context deadline exceeded`, auth errors with exit code 2.
    pub async fn connect(&self, deadline: Option<Instant>) -> Result<Ctl, (i32, String)> {
        let tls = self.secure.tls().map_err(|e| (EXIT_BAD_ARGS, e))?;
        let urls = self.endpoint_urls();
        let mut opts = ConnectOptions {
            tls,
            dial_timeout: self.dial_timeout,
            ..Default::default()
        };
        if !self.keepalive_time.is_zero() {
            opts.keepalive_interval = Some(self.keepalive_time);
            opts.keepalive_timeout = Some(self.keepalive_timeout.max(Duration::from_secs(1)));
        }
        let (client, target) = loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err((EXIT_ERROR, "context deadline exceeded".to_string()));
            }
            let per_try = match (remaining, self.dial_timeout.is_zero()) {
                (Some(r), true) => r,
                (Some(r), false) => r.min(self.dial_timeout),
                (None, true) => Duration::from_secs(3600),
                (None, false) => self.dial_timeout,
            };
            opts.dial_timeout = per_try;
            let mut connected = None;
            let mut invalid = false;
            for url in &urls {
                match etcd_client::connect_channel(std::slice::from_ref(url), &opts).await {
                    Ok(ch) => {
                        connected = Some((Client::from_channel(ch), url.clone()));
                        break;
                    }
                    Err(etcd_client::ClientError::InvalidEndpoint { .. }) => invalid = true,
                    Err(_) => {}
                }
            }
            if let Some(c) = connected {
                break c;
            }
            if invalid && deadline.is_some() {
                // Go dials a bad address for ever; the request then times out.
                sleep_until_deadline(deadline).await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let host = target
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&target)
            .to_string();
        let ctl = Ctl {
            client,
            token: Arc::new(std::sync::Mutex::new(None)),
            deadline,
            auth: self.auth.clone(),
            target: format!("endpoint://client-{}/{host}", uuid4()),
        };
        ctl.authenticate()
            .await
            .map_err(|e| (EXIT_BAD_CONNECTION, e))?;
        Ok(ctl)
    }

    /// `connect` for commands: exits on failure.
    pub async fn must_connect(&self, deadline: Option<Instant>) -> Ctl {
        match self.connect(deadline).await {
            Ok(c) => c,
            Err((code, msg)) => exit::fail(code, &msg),
        }
    }
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep(d.saturating_duration_since(Instant::now())).await,
        None => std::future::pending::<()>().await,
    }
}

/// A connected client with its auth token and the deadline of the running command.
#[derive(Clone)]
pub struct Ctl {
    pub client: Client,
    token: Arc<std::sync::Mutex<Option<String>>>,
    pub deadline: Option<Instant>,
    auth: Option<AuthCfg>,
    /// clientv3's name for the connection, in its warning lines.
    target: String,
}

/// Errors after which clientv3 fetches a new token and retries once.
pub fn needs_new_token(e: &str) -> bool {
    matches!(
        e,
        "etcdserver: invalid auth token"
            | "etcdserver: revision of auth store is old"
            | "etcdserver: user name is empty"
    )
}

impl Ctl {
    /// Wraps a message with the auth token.
    pub fn req<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        let token = self.token.lock().map(|t| t.clone()).unwrap_or(None);
        if let Some(t) = token
            && let Ok(v) = t.parse()
        {
            r.metadata_mut().insert("token", v);
        }
        r
    }

    /// Gets a token for the configured user (none when auth is off or no user is given).
    pub async fn authenticate(&self) -> Result<(), String> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let req = etcd_api::etcdserverpb::AuthenticateRequest {
            name: auth.user.clone(),
            password: auth.password.clone(),
        };
        let mut a = self.client.auth.clone();
        match self.unary(a.authenticate(req)).await {
            Ok(resp) => {
                if let Ok(mut t) = self.token.lock() {
                    *t = Some(resp.token);
                }
                Ok(())
            }
            Err(e) if e == "etcdserver: authentication is not enabled" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs one call under the command's deadline, turning errors into etcdctl's text (and
    /// logging clientv3's warning line for them).
    pub async fn unary<T, F>(&self, f: F) -> Result<T, String>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let res = match self.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), f).await {
                Ok(r) => r,
                Err(_) => {
                    self.warn(
                        "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                    );
                    return Err("context deadline exceeded".to_string());
                }
            },
            None => f.await,
        };
        res.map(|r| r.into_inner()).map_err(|s| {
            let (code, message) = exit::as_grpc_go(&s);
            self.warn(&format!(
                "rpc error: code = {} desc = {message}",
                exit::code_name(code)
            ));
            exit::status_text(&s)
        })
    }

    /// clientv3's send limit, checked before sending as grpc-go does, with its error.
    pub fn check_send_size<M: prost::Message>(&self, request: &M) -> Result<(), String> {
        let len = request.encoded_len();
        if len <= etcd_client::MAX_REQUEST_BYTES {
            return Ok(());
        }
        let text = format!(
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max \
             ({len} vs. {})",
            etcd_client::MAX_REQUEST_BYTES
        );
        self.warn(&text);
        Err(text)
    }

    fn warn(&self, error: &str) {
        eprintln!(
            "{{\"level\":\"warn\",\"ts\":\"{}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}",
            iso_time(),
            crate::json::string(&self.target),
            crate::json::string(error)
        );
    }
}

/// Calls `client.method(request)` through [`Ctl::unary`], retrying once with a fresh token
/// when the server says the token is stale (clientv3's retry interceptor).
#[macro_export]
macro_rules! call {
    ($c:expr, $cl:ident . $m:ident ( $req:expr )) => {{
        let req = $req;
        let mut r = match $c.check_send_size(&req) {
            Ok(()) => $c.unary($cl.$m($c.req(req.clone()))).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &r {
            if $crate::global::needs_new_token(e) && $c.authenticate().await.is_ok() {
                r = $c.unary($cl.$m($c.req(req))).await;
            }
        }
        r
    }};
}

fn uuid4() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let variant = ["8", "9", "a", "b"][usize::from(b[8] & 3)];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// zap's ISO-8601 UTC timestamp with milliseconds.
pub fn iso_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// The deadline of a short command: `--command-timeout` from now.
pub fn command_deadline(flags: &Flags) -> Option<Instant> {
    Some(Instant::now() + flags.dur("command-timeout"))
}

/// `--debug`: every global flag as its environment variable.
pub fn print_debug(flags: &Flags) {
    for name in &flags.inherited {
        if flags.kind(name) == Some(Kind::Bool) || flags.has(name) {
            eprintln!("{}={}", flag_to_env(name), flags.display(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's auto-TLS certificates are P-521: the ClientHello must offer
    /// ecdsa_secp521r1_sha512 (0x0603) when verification is skipped.
    #[test]
    fn skip_verify_offers_p521() {
        let cfg = SecureCfg {
            insecure_transport: false,
            insecure_skip_verify: true,
            ..Default::default()
        };
        let tls = cfg.tls().expect("config").expect("tls");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let hello = rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = l.local_addr().expect("addr");
            tokio::spawn(async move {
                let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let c = tokio_rustls::TlsConnector::from(tls);
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let _ = c.connect(name, s).await;
            });
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                .await
                .expect("read");
            buf.truncate(n);
            buf
        });
        assert!(
            hello.windows(2).any(|w| w == [0x06, 0x03]),
            "no P-521 in {hello:02x?}"
        );
    }
}
