//! systemd's notify protocol, for units with `Type=notify`: one datagram with `READY=1` once
//! the member has joined its cluster and serves clients (what etcd sends), and `STOPPING=1`
//! when it begins to shut down, to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract socket when it starts with `@`). Without the variable there is nothing to do.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`, ...). Ok(false) when not started by systemd.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = socket.to_string_lossy().into_owned();
    let sender = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sender.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sender.send_to(state.as_bytes(), &socket)?;
    }
    Ok(true)
}

/// Tells systemd the member serves; a failure is logged as etcd logs it, with what to check.
pub fn notify_ready() {
    match notify("READY=1") {
        Ok(true) => tracing::info!("notified systemd: the member is ready"),
        Ok(false) => {}
        Err(e) => tracing::error!(
            plain = %format!(
                "failed to notify systemd for readiness: {e} (check NOTIFY_SOCKET and that the \
                 unit has Type=notify)"
            ),
            error = %e,
            "failed to notify systemd for readiness; check NOTIFY_SOCKET and that the unit has Type=notify"
        ),
    }
}

/// Tells systemd the member is stopping.
pub fn notify_stopping() {
    if let Err(e) = notify("STOPPING=1") {
        tracing::warn!(
            error = %e,
            hint = "check NOTIFY_SOCKET and that the unit has Type=notify",
            "failed to notify systemd that the member is stopping"
        );
    }
}
