//! `--discovery-srv` for the v3 commands: the endpoints from DNS SRV records
//! (`_etcd-client-ssl._tcp.<domain>` and `_etcd-client._tcp.<domain>`), looked up by
//! `etcd_client::srv` through the resolvers of /etc/resolv.conf; insecure (http) ones dropped
//! unless `--insecure-discovery`.

pub fn discover(domain: &str, service: &str, insecure: bool) -> Result<Vec<String>, String> {
    let found = etcd_client::srv::blocking::get_client("etcd-client", domain, service)?;
    let mut eps = found;
    if !insecure {
        eps.retain(|e| {
            if e.starts_with("http://") {
                eprintln!(
                    "ignoring discovered insecure endpoint {}",
                    crate::gofmt::quote(e)
                );
                false
            } else {
                true
            }
        });
    }
    // The targets' final dots go: the v3 client dials and checks certificates by host name.
    let eps = eps
        .into_iter()
        .map(|ep| match ep.rsplit_once(".:") {
            Some((host, port)) => format!("{host}:{port}"),
            None => ep,
        })
        .collect();
    Ok(eps)
}
