//! The members API (`/v2/members`) as etcd's client calls it, and `member list|add|remove|
//! update`. The client's endpoint sync reads the member list through [`list`] too.

use std::time::Instant;

use super::client::{Action, Client, ClientError};
use super::gourl::{self, GoUrl};
use super::json::{self, Dv, Field, StructTy, Ty};
use super::{Ctx, Exit, R, eprint, eprint_arg, eprint_line, must_new_client, out, out_arg};
use crate::gofmt;

static MEMBER: StructTy = StructTy {
    name: "Member",
    go: "client.Member",
    fields: &[
        Field {
            key: "id",
            ty: Ty::Str,
        },
        Field {
            key: "name",
            ty: Ty::Str,
        },
        Field {
            key: "peerURLs",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
        Field {
            key: "clientURLs",
            ty: Ty::Slice(&Ty::Str, "[]string"),
        },
    ],
};
static MEMBER_TY: Ty = Ty::Struct(&MEMBER);
/// `memberCollection`'s decoding target.
static COLLECTION: StructTy = StructTy {
    name: "",
    go: "struct { Members []client.Member }",
    fields: &[Field {
        key: "Members",
        ty: Ty::Slice(&MEMBER_TY, "[]client.Member"),
    }],
};
static MEMBERS_ERROR: StructTy = StructTy {
    name: "membersError",
    go: "client.membersError",
    fields: &[Field {
        key: "message",
        ty: Ty::Str,
    }],
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl Member {
    fn from_dv(d: &Dv) -> Member {
        Member {
            id: d.field(0).str().to_string(),
            name: d.field(1).str().to_string(),
            peer_urls: d.field(2).strs(),
            client_urls: d.field(3).strs(),
        }
    }
}

fn members_url(ep: &GoUrl, id: Option<&str>) -> GoUrl {
    let mut u = ep.clone();
    u.path = gourl::join(&[&ep.path, "/v2/members"]);
    if let Some(id) = id {
        u.path = gourl::join(&[&u.path, id]);
    }
    u
}

fn unexpected(status: u16) -> ClientError {
    ClientError::other(format!("unexpected status code {status}"))
}

fn decode_err(e: String) -> ClientError {
    ClientError::other(e)
}

/// `MembersAPI.List`.
pub async fn list(hc: &mut Client, deadline: Option<Instant>) -> Result<Vec<Member>, ClientError> {
    let act = Action::new("GET", |ep| members_url(ep, None));
    let resp = hc.do_action(&act, deadline).await?;
    if resp.status != 200 {
        return Err(unexpected(resp.status));
    }
    let (d, err) = json::decode(&resp.body, &Ty::Struct(&COLLECTION), false);
    if let Some(e) = err {
        return Err(decode_err(e));
    }
    Ok(d.field(0).items().iter().map(Member::from_dv).collect())
}

/// `MembersAPI.Leader`.
async fn leader(hc: &mut Client, deadline: Option<Instant>) -> Result<Member, ClientError> {
    let act = Action::new("GET", |ep| {
        let mut u = members_url(ep, None);
        u.path = gourl::join(&[&u.path, "/leader"]);
        u
    });
    let resp = hc.do_action(&act, deadline).await?;
    if resp.status != 200 {
        return Err(unexpected(resp.status));
    }
    let (d, err) = json::decode(&resp.body, &MEMBER_TY, false);
    match err {
        Some(e) => Err(decode_err(e)),
        None => Ok(Member::from_dv(&d)),
    }
}

/// etcd's `types.NewURLs`: peer URLs checked and sorted.
fn new_urls(strs: &[&str]) -> Result<Vec<String>, String> {
    if strs.is_empty() {
        return Err("no valid URLs given".to_string());
    }
    let mut out = Vec::new();
    for s in strs {
        let s = s.trim();
        let u = GoUrl::parse(s)?;
        if !matches!(u.scheme.as_str(), "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {s}"
            ));
        }
        if !has_port(&u.host) {
            return Err(format!(
                "URL address does not have the form \"host:port\": {s}"
            ));
        }
        if !u.path.is_empty() {
            return Err(format!("URL must not contain a path: {s}"));
        }
        out.push(u.to_string());
    }
    out.sort();
    Ok(out)
}

/// Whether Go's `net.SplitHostPort` takes this host.
fn has_port(hp: &str) -> bool {
    let Some(i) = hp.rfind(':') else {
        return false;
    };
    let (j, k) = if hp.starts_with('[') {
        match hp.find(']') {
            Some(end) if end + 1 == i => (1, end + 1),
            _ => return false,
        }
    } else if hp[..i].contains(':') {
        return false;
    } else {
        (0, 0)
    };
    !hp[j..].contains('[') && !hp[k..].contains(']')
}

fn peer_urls_body(urls: &[String]) -> Vec<u8> {
    let items: Vec<String> = urls.iter().map(|u| crate::json::string(u)).collect();
    format!("{{\"peerURLs\":[{}]}}", items.join(",")).into_bytes()
}

fn members_error(body: &[u8]) -> ClientError {
    let (d, err) = json::decode(body, &Ty::Struct(&MEMBERS_ERROR), false);
    match err {
        Some(e) => decode_err(e),
        None => ClientError::other(d.field(0).str()),
    }
}

/// `MembersAPI.Add`.
async fn add(
    hc: &mut Client,
    peer_url: &str,
    deadline: Option<Instant>,
) -> Result<Member, ClientError> {
    let urls = new_urls(&[peer_url]).map_err(ClientError::other)?;
    let act = Action::new("POST", |ep| members_url(ep, None))
        .body("application/json", peer_urls_body(&urls));
    let resp = hc.do_action(&act, deadline).await?;
    match resp.status {
        201 => {
            let (d, err) = json::decode(&resp.body, &MEMBER_TY, false);
            match err {
                Some(e) => Err(decode_err(e)),
                None => Ok(Member::from_dv(&d)),
            }
        }
        409 => Err(members_error(&resp.body)),
        s => Err(unexpected(s)),
    }
}

/// `MembersAPI.Update`.
async fn update(
    hc: &mut Client,
    id: &str,
    peer_urls: &[&str],
    deadline: Option<Instant>,
) -> Result<(), ClientError> {
    let urls = new_urls(peer_urls).map_err(ClientError::other)?;
    let id = id.to_string();
    let act = Action::new("PUT", move |ep| members_url(ep, Some(&id)))
        .body("application/json", peer_urls_body(&urls));
    let resp = hc.do_action(&act, deadline).await?;
    match resp.status {
        204 => Ok(()),
        404 | 409 => Err(members_error(&resp.body)),
        s => Err(unexpected(s)),
    }
}

/// `MembersAPI.Remove`.
async fn remove(hc: &mut Client, id: &str, deadline: Option<Instant>) -> Result<(), ClientError> {
    let id = id.to_string();
    let act = Action::new("DELETE", move |ep| members_url(ep, Some(&id)));
    let resp = hc.do_action(&act, deadline).await?;
    match resp.status {
        204 | 410 => Ok(()),
        s => Err(unexpected(s)),
    }
}

fn fail(msg: &str) -> Exit {
    eprint_line(msg);
    Exit(1)
}

pub async fn run(ctx: &Ctx, sub: &str) -> R {
    match sub {
        "list" => member_list(ctx).await,
        "add" => member_add(ctx).await,
        "remove" => member_remove(ctx).await,
        "update" => member_update(ctx).await,
        _ => Ok(()),
    }
}

async fn member_list(ctx: &Ctx) -> R {
    if !ctx.args().is_empty() {
        return Err(fail("No arguments accepted"));
    }
    let mut hc = must_new_client(ctx).await?;
    let deadline = ctx.deadline();
    let members = list(&mut hc, deadline)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    let leader = leader(&mut hc, deadline)
        .await
        .map_err(|e| fail(&format!("Failed to get leader:  {e}")))?;
    for m in members {
        if m.name.is_empty() {
            out(&format!(
                "{}[unstarted]: peerURLs={}\n",
                m.id,
                m.peer_urls.join(",")
            ));
        } else {
            out(&format!(
                "{}: name={} peerURLs={} clientURLs={} isLeader={}\n",
                m.id,
                m.name,
                m.peer_urls.join(","),
                m.client_urls.join(","),
                m.id == leader.id
            ));
        }
    }
    Ok(())
}

async fn member_add(ctx: &Ctx) -> R {
    let args = ctx.args();
    if args.len() != 2 {
        return Err(fail("Provide a name and a single member peerURL"));
    }
    let mut hc = must_new_client(ctx).await?;
    let deadline = ctx.deadline();
    let m = add(&mut hc, &args[1], deadline)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    let new_name = &args[0];
    out_arg(&format!(
        "Added member named {new_name} with ID {} to cluster\n",
        m.id
    ));
    let members = list(&mut hc, deadline)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    let mut conf = Vec::new();
    for memb in &members {
        for u in &memb.peer_urls {
            let n = if memb.id == m.id {
                new_name.clone()
            } else {
                memb.name.clone()
            };
            conf.push(format!("{n}={u}"));
        }
    }
    out("\n");
    out(&format!(
        "ETCD_NAME={}\n",
        gofmt::quote_bytes(&crate::rawarg::bytes(new_name))
    ));
    out(&format!(
        "ETCD_INITIAL_CLUSTER={}\n",
        gofmt::quote_bytes(&crate::rawarg::bytes(&conf.join(",")))
    ));
    out("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
    Ok(())
}

async fn member_remove(ctx: &Ctx) -> R {
    let args = ctx.args();
    if args.len() != 1 {
        return Err(fail("Provide a single member ID"));
    }
    let removal_id = &args[0];
    let mut hc = must_new_client(ctx).await?;
    let deadline = ctx.deadline();
    let members = list(&mut hc, deadline).await.map_err(|e| {
        fail(&format!(
            "Error while verifying ID against known members: {e}"
        ))
    })?;
    let mut found = false;
    for m in &members {
        if &m.id == removal_id {
            found = true;
        }
        if &m.name == removal_id {
            eprint(&format!(
                "Found a member named {}; if this is correct, please use its ID, eg:\n\tetcdctl member remove {}\n",
                m.name, m.id
            ));
            eprint(
                "For more details, read the documentation at https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n\n",
            );
        }
    }
    if !found {
        eprint_arg(&format!(
            "Couldn't find a member in the cluster with an ID of {removal_id}.\n"
        ));
        return Err(Exit(1));
    }
    if let Err(e) = remove(&mut hc, removal_id, deadline).await {
        eprint_arg(&format!(
            "Received an error trying to remove member {removal_id}: {e}"
        ));
        return Err(Exit(1));
    }
    out_arg(&format!("Removed member {removal_id} from cluster\n"));
    Ok(())
}

async fn member_update(ctx: &Ctx) -> R {
    let args = ctx.args();
    if args.len() != 2 {
        return Err(fail(
            "Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)",
        ));
    }
    let mut hc = must_new_client(ctx).await?;
    let (mid, urls) = (&args[0], &args[1]);
    let urls: Vec<&str> = urls.split(',').collect();
    update(&mut hc, mid, &urls, ctx.deadline())
        .await
        .map_err(|e| fail(&e.to_string()))?;
    out_arg(&format!("Updated member with ID {mid} in cluster\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_as_etcds_types_package() {
        assert_eq!(
            new_urls(&["http://b:2", " http://a:1 "]).unwrap(),
            vec!["http://a:1", "http://b:2"]
        );
        assert_eq!(
            new_urls(&["ftp://a:1"]).unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: ftp://a:1"
        );
        assert_eq!(
            new_urls(&["http://a"]).unwrap_err(),
            "URL address does not have the form \"host:port\": http://a"
        );
        assert_eq!(
            new_urls(&["http://a:1/x"]).unwrap_err(),
            "URL must not contain a path: http://a:1/x"
        );
        assert!(new_urls(&["http://[::1]:1"]).is_ok());
    }

    #[test]
    fn member_lists_decode_as_gos() {
        let (d, err) = json::decode(
            br#"{"members":[{"id":"a","name":"n","peerURLs":["p"],"clientURLs":[]}]}"#,
            &Ty::Struct(&COLLECTION),
            false,
        );
        assert!(err.is_none());
        let m = Member::from_dv(&d.field(0).items()[0]);
        assert_eq!(m.id, "a");
        assert_eq!(m.peer_urls, vec!["p"]);
        let (_, err) = json::decode(
            br#"{"members":[{"id":1}]}"#,
            &Ty::Struct(&COLLECTION),
            false,
        );
        assert_eq!(
            err.unwrap(),
            "json: cannot unmarshal number into Go struct field Member.Members.id of type string"
        );
    }
}
