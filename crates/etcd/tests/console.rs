//! The web console (`--enable-ui`), driven in a real headless browser: Debian's chromium
//! through chromedriver (WebDriver), as a user clicks. Screenshots of each step are saved under
//! `target/tmp/console-screenshots/<test>/` (the README's one shows the keys view).
//!
//! The browser tests skip with a note when `/usr/bin/chromium` or `/usr/bin/chromedriver` is
//! missing (`.ci/run` installs both); the test of the flag itself needs no browser.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::EtcdProcess;
use common::cluster::{Cluster, ClusterOptions};
use etcd_api::authpb::permission::Type as PermType;
use etcd_api::etcdserverpb::*;
use etcd_client::{Client, ConnectOptions, Credentials};
use fantoccini::Locator;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what a step waits for (a debug build of the server on
/// a loaded 2-core machine, and a browser starting).
const UI_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless chromium under chromedriver, with one WebDriver session.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
    shots: PathBuf,
    /// Where the browser saves downloads (the snapshot).
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` (with a note) when Debian's chromium or chromedriver is not installed.
    async fn start(test: &str) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!(
                "skipped: {CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium \
                 chromium-driver)"
            );
            return None;
        }
        let port = common::free_port();
        // Its own process group, so that a failed test can stop chromedriver and the
        // browsers it started in one signal.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("browser profile dir");
        let downloads = tempfile::tempdir().expect("download dir");
        // Headless, and quiet on a machine without a network: the background services
        // chromium starts would each try to reach Google.
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                },
            }
        });
        let capabilities = capabilities.as_object().expect("an object").clone();
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + UI_TIMEOUT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                // chromedriver is still starting: its port is not open yet.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("console-screenshots")
            .join(test);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Some(Browser {
            driver,
            client,
            shots,
            downloads,
            _profile: profile,
        })
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Saves a screenshot of the page as `<name>.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    /// Waits until the page's `condition` (a JS expression) is true. Each failure to meet it
    /// in time saves a screenshot and names the condition.
    async fn wait(&self, what: &str, condition: &str) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + UI_TIMEOUT;
        loop {
            if let Ok(value) = self.client.execute(&script, vec![]).await
                && value.as_bool() == Some(true)
            {
                return;
            }
            if Instant::now() > deadline {
                self.shot("timed-out").await;
                let text = self.text("body").await;
                panic!("timed out waiting for {what} ({condition}); the page says:\n{text}");
            }
            // The page updates on its own (network answers, a watch): poll it, as WebDriver's
            // own waits do.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element matching `css` exists and its text contains `text`.
    async fn wait_text(&self, css: &str, text: &str) {
        let condition = format!(
            "(() => {{ const e = document.querySelector({css}); \
             return e && !e.hidden && e.textContent.includes({text}); }})()",
            css = json!(css),
            text = json!(text),
        );
        self.wait(&format!("{css} to say {text:?}"), &condition)
            .await;
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                vec![json!(css)],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    async fn click(&self, css: &str) {
        self.wait(&format!("{css} to be clickable"), &format!(
            "(() => {{ const e = document.querySelector({css}); return e && !e.disabled && e.offsetParent !== null; }})()",
            css = json!(css)
        ))
        .await;
        // The page re-renders what a live update touched: an element found a moment ago may
        // have been replaced by the time it is clicked. Find it again then.
        let deadline = Instant::now() + UI_TIMEOUT;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale") && Instant::now() < deadline => {}
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Replaces an input's text, as typing does.
    async fn type_into(&self, css: &str, text: &str) {
        self.wait(&format!("{css} to be shown"), &format!(
            "(() => {{ const e = document.querySelector({css}); return e && e.offsetParent !== null; }})()",
            css = json!(css)
        ))
        .await;
        let element = self.client.find(Locator::Css(css)).await.expect("input");
        element.clear().await.expect("clear input");
        element.send_keys(text).await.expect("type");
    }

    /// Clicks the tree button of the node whose key is `key` (its label).
    async fn click_tree(&self, key: &str) {
        let css = format!("li.tree-node[data-key={}] > .tree-label", json!(key));
        self.click(&css).await;
    }

    async fn login(&self, user: &str, password: &str) {
        self.wait("the login dialog", "document.getElementById('login').open")
            .await;
        self.type_into("#login-user", user).await;
        self.type_into("#login-password", password).await;
        self.click("#login-submit").await;
        self.wait(
            "the login to succeed",
            "!document.getElementById('login').open",
        )
        .await;
    }
}

impl Browser {
    /// Ends the WebDriver session: chromedriver stops its browser.
    async fn finish(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser too, when the test failed before `finish`.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn root_client(url: &str) -> Client {
    Client::connect_as(
        &[url],
        ConnectOptions::default(),
        Credentials {
            user: "root".into(),
            password: "rootpw".into(),
        },
    )
    .await
    .expect("connect as root")
}

/// 10,000 keys `/app/dirNN/keyNNNN` (100 directories of 100), `/secret/a`, users `root` and
/// `alice` (who may read and write `/app/` only), then auth on.
async fn load_keys_and_users(client: &mut Client) {
    for dir in 0..100 {
        let puts = (0..100)
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("/app/dir{dir:02}/key{:04}", dir * 100 + k).into_bytes(),
                    value: format!("value {dir}/{k}").into_bytes(),
                    ..Default::default()
                })),
            })
            .collect();
        client
            .kv
            .txn(TxnRequest {
                success: puts,
                ..Default::default()
            })
            .await
            .expect("load keys");
    }
    client
        .put("/app/config.json", r#"{"replicas":3,"zones":["a","b"]}"#)
        .await
        .unwrap();
    client.put("/secret/a", "hidden").await.unwrap();
    common::add_root(client, "rootpw").await;
    common::add_user_with_permission(
        client,
        ("alice", "alicepw"),
        "app",
        PermType::Readwrite,
        (b"/app/", b"/app0"),
    )
    .await;
    client.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

async fn value_of(client: &mut Client, key: &str) -> String {
    let kvs = client.get(key).await.expect("get").kvs;
    String::from_utf8(kvs[0].value.clone()).expect("text")
}

/// Log in, browse a tree of 10,000 keys, edit a value, see a conflicting edit refused, watch
/// an event arrive, see the tree follow a new key; then as a user who may read only `/app/`,
/// see "permission denied" for `/secret/` and no key of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_logs_in_browses_edits_and_watches() {
    let Some(browser) = Browser::start("keys").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &["--enable-ui"]).await;
    let url = member.client_url.clone();
    load_keys_and_users(&mut member.client().await).await;
    let mut root = root_client(&url).await;

    // Auth is on: the page asks for a user before it shows a key.
    browser.goto(&format!("{url}/ui/#/keys")).await;
    browser.shot("01-login").await;
    browser.login("root", "rootpw").await;
    browser.wait_text("#user", "logged in as root").await;

    // The tree: "/" then "app/" then 100 directories, listed a page at a time.
    browser.click_tree("/").await;
    browser.click_tree("/app/").await;
    browser
        .wait_text("li.tree-node[data-key='/app/dir42/']", "dir42/")
        .await;
    browser.click_tree("/app/dir42/").await;
    browser.wait_text("#dir-count", "100").await;
    browser.click_tree("/app/dir42/key4217").await;
    browser.wait_text("#key-value-view", "value 42/17").await;
    browser.wait_text("#key-version", "1").await;
    browser.shot("02-tree").await;

    // JSON shown pretty.
    browser.click_tree("/app/config.json").await;
    browser.click("#value-mode-json").await;
    browser
        .wait_text("#key-value-view", "\"replicas\": 3")
        .await;
    browser.click("#value-mode-text").await;

    // An edit, saved with a compare on the mod revision.
    browser.click_tree("/app/dir42/key4217").await;
    browser.wait_text("#key-value-view", "value 42/17").await;
    browser.click("#key-edit").await;
    browser
        .type_into("#key-value", "edited in the browser")
        .await;
    browser.click("#key-save").await;
    browser.wait_text("#key-message", "Saved at revision").await;
    browser
        .wait_text("#key-value-view", "edited in the browser")
        .await;
    assert_eq!(
        value_of(&mut root, "/app/dir42/key4217").await,
        "edited in the browser"
    );

    // A conflicting edit: someone else writes the key while it is open in the editor.
    browser.click("#key-edit").await;
    browser.type_into("#key-value", "my stale edit").await;
    root.put("/app/dir42/key4217", "written meanwhile")
        .await
        .unwrap();
    browser.click("#key-save").await;
    browser.wait_text("#key-message", "Conflict").await;
    browser
        .wait_text("#key-conflict-value", "written meanwhile")
        .await;
    browser.shot("03-conflict").await;
    assert_eq!(
        value_of(&mut root, "/app/dir42/key4217").await,
        "written meanwhile",
        "the stale edit must not overwrite the concurrent one"
    );
    browser.click("#key-cancel").await;

    // History of the key, with a diff between its last two versions.
    browser.click("#key-history-button").await;
    browser.wait_text("#history-table", "v3").await;
    browser
        .wait_text("#history-diff", "+ written meanwhile")
        .await;
    browser.shot("04-history").await;
    // Written elsewhere while the history is open: the key is shown again (live), and its
    // history stays open with the new version.
    root.put("/app/dir42/key4217", "written while the history is open")
        .await
        .unwrap();
    browser.wait_text("#history-table", "v4").await;
    browser
        .wait_text("#history-diff", "+ written while the history is open")
        .await;

    // The tree follows a key created elsewhere (the page watches every key).
    root.put("/app/dir42/created-elsewhere", "new")
        .await
        .unwrap();
    browser
        .wait_text(
            "li.tree-node[data-key='/app/dir42/created-elsewhere']",
            "created-elsewhere",
        )
        .await;

    // A watch on a prefix shows an event as it happens.
    browser.goto(&format!("{url}/ui/#/watch")).await;
    browser.type_into("#watch-key", "/app/dir07/").await;
    browser.click("#watch-start").await;
    browser.wait_text("#watch-status", "Watching (watch").await;
    root.put("/app/dir07/key0700", "seen live").await.unwrap();
    browser
        .wait_text(
            "#watch-events li[data-key='/app/dir07/key0700']",
            "seen live",
        )
        .await;
    browser.shot("05-watch").await;

    // A prefix delete names the count before it deletes.
    browser.goto(&format!("{url}/ui/#/keys")).await;
    browser.click_tree("/app/dir05/").await;
    browser.wait_text("#dir-count", "100").await;
    browser.click("#dir-delete").await;
    browser
        .wait_text("#confirm .confirm-detail", "Delete all 100 keys")
        .await;
    browser.click("#confirm-ok").await;
    browser.wait_text("#key-message", "Deleted 100 keys").await;
    assert!(root.get_prefix("/app/dir05/").await.unwrap().kvs.is_empty());

    // 2,000 changes within a second or two: live updates give way to polling, which still
    // shows the tree as it is.
    browser.wait_text("#keys-live", "live").await;
    for (from, to) in [("/app/dir1", "/app/dir2"), ("/app/dir2", "/app/dir3")] {
        let deleted = root
            .kv
            .delete_range(DeleteRangeRequest {
                key: from.into(),
                range_end: to.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deleted;
        assert_eq!(deleted, 1000, "{from}");
    }
    browser.wait_text("#keys-live", "every 5 s").await;
    browser
        .wait(
            "the tree to lose the deleted directories",
            "!document.querySelector(\"li.tree-node[data-key='/app/dir15/']\")",
        )
        .await;

    // Alice may read /app/ only: /secret/ shows "permission denied" and none of its keys.
    browser.click("#logout").await;
    browser.goto(&format!("{url}/ui/#/keys")).await;
    browser.login("alice", "alicepw").await;
    browser.click("#keys-mode-flat").await;
    browser.type_into("#keys-flat-prefix", "/secret/").await;
    browser.click("#keys-flat form button[type=submit]").await;
    browser.wait_text("#keys-notice", "permission denied").await;
    assert_eq!(
        browser.text("#keys-flat-list").await,
        "",
        "no key of /secret/ may show"
    );
    browser.shot("06-permission-denied").await;
    // She may not watch every key either: the page polls instead.
    browser.wait_text("#keys-live", "every 5 s").await;
    browser.type_into("#keys-flat-prefix", "/app/dir01/").await;
    browser.click("#keys-flat form button[type=submit]").await;
    browser.wait_text("#keys-flat-count", "100 keys").await;
    browser
        .wait_text("#keys-flat-list", "/app/dir01/key0100")
        .await;
    browser.finish().await;
}

/// The cluster view marks the leader, and "Make leader" moves it (a confirmation first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_members_and_moves_the_leader() {
    let Some(browser) = Browser::start("cluster").await else {
        return;
    };
    let mut options = ClusterOptions::new(3);
    options.args.push("--enable-ui".to_string());
    let cluster = Cluster::start(options).await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let leader_id = cluster
        .status(leader)
        .await
        .unwrap()
        .header
        .unwrap()
        .member_id;
    let target = (leader + 1) % 3;
    let target_id = cluster
        .status(target)
        .await
        .unwrap()
        .header
        .unwrap()
        .member_id;

    browser
        .goto(&format!("{}/ui/#/cluster", cluster.url(target)))
        .await;
    let row = |id: u64| format!("#members tr[data-member-id='{id:x}']");
    browser.wait_text(&row(leader_id), "leader").await;
    browser.wait_text(&row(target_id), "healthy").await;
    browser.shot("01-members").await;

    browser
        .click(&format!("{} .member-move-leader", row(target_id)))
        .await;
    browser
        .wait_text("#confirm .confirm-detail", "Hand leadership")
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#cluster-status", "Leadership moved")
        .await;
    browser
        .wait(
            "the leader flag to move",
            &format!(
                "document.querySelector(\"{}\")?.dataset.leader === 'true'",
                row(target_id)
            ),
        )
        .await;
    browser.shot("02-leader-moved").await;
    let now = cluster.status(target).await.unwrap();
    assert_eq!(now.leader, target_id, "the member the page chose leads");
    browser.finish().await;
}

/// A plain HTTP/1.1 request: status and body.
fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn http_get(url: &str, path: &str) -> (u16, String) {
    http(url, "GET", path, "")
}

/// Without `--enable-ui` the console does not exist (`/ui/` is Go's 404 like any path); with
/// it, it is on the client URL and on `--listen-metrics-urls` with the gateway beside it.
#[tokio::test]
async fn console_is_served_only_with_enable_ui() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("http://127.0.0.1:{}", common::free_port());
    let off = EtcdProcess::start(
        &dir.path().join("off"),
        &["--listen-metrics-urls", &metrics],
    )
    .await;
    assert_eq!(
        http_get(&off.client_url, "/ui/"),
        (404, "404 page not found\n".to_string())
    );
    assert_eq!(http_get(&metrics, "/ui/").0, 404);
    drop(off);

    let metrics = format!("http://127.0.0.1:{}", common::free_port());
    let on = EtcdProcess::start(
        &dir.path().join("on"),
        &["--enable-ui", "--listen-metrics-urls", &metrics],
    )
    .await;
    for base in [&on.client_url, &metrics] {
        let (status, body) = http_get(base, "/ui/");
        assert_eq!(status, 200, "{base}");
        assert!(body.contains("etcd console"), "{base}: {body}");
        assert_eq!(http_get(base, "/ui/js/main.js").0, 200, "{base}");
        assert_eq!(http_get(base, "/ui/missing.js").0, 404, "{base}");
    }
    // The console on the metrics port reaches the member through the gateway there.
    let mut client = on.client().await;
    client.put("k", "v").await.unwrap();
    let (status, body) = http(&metrics, "POST", "/v3/kv/range", r#"{"key":"aw=="}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":"dg==""#), "{body}");
}

/// The page's pure helpers, run in the browser against a keyspace held in the page: the tree
/// listing (paging, directories jumped over in one read, keys with 0xff bytes, a prefix that
/// is itself a key), etcd's prefix end, the line diff and key display.
const HELPERS_SCRIPT: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const bytes = await import('/ui/js/bytes.js');
  const tree = await import('/ui/js/tree.js');
  const diff = await import('/ui/js/diff.js');
  const api = await import('/ui/js/api.js');
  const failures = [];
  const check = (what, got, want) => {
    const g = JSON.stringify(got), w = JSON.stringify(want);
    if (g !== w) failures.push(`${what}: got ${g}, want ${w}`);
  };
  const k = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  const s = (b) => String.fromCharCode(...b);

  // A keyspace and etcd's Range over it (key, range_end, limit, more), counting reads.
  const keys = ['/a', '/b/1', '/b/2', '/c/d/e', 'x', 'y/z', '\xff\xff/k', '\xff\xff\xff'];
  for (let i = 0; i < 1000; i++) keys.push('/big/' + String(i).padStart(4, '0'));
  const space = keys.map(k).sort(bytes.compare);
  let reads = 0;
  const range = async (r) => {
    reads++;
    const from = bytes.fromBase64(r.key);
    const end = bytes.fromBase64(r.range_end);
    const all = end.length === 1 && end[0] === 0;
    const hits = space.filter((key) => bytes.compare(key, from) >= 0 && (all || bytes.compare(key, end) < 0));
    const page = hits.slice(0, r.limit || hits.length);
    return { kvs: page.map((key) => ({ key: bytes.toBase64(key) })), more: hits.length > page.length };
  };
  const names = (children) => children.map((c) => s(c.key) + (c.dir ? ' (dir)' : ''));
  const sep = '/'.charCodeAt(0);

  let answer = await tree.listChildren(range, new Uint8Array(0), sep, null, 100);
  check('root', names(answer.children), ['/ (dir)', 'x', 'y/ (dir)', '\xff\xff/ (dir)', '\xff\xff\xff']);
  check('root complete', answer.cursor, null);

  reads = 0;
  answer = await tree.listChildren(range, k('/'), sep, null, 100);
  check('under /', names(answer.children), ['/a', '/b/ (dir)', '/big/ (dir)', '/c/ (dir)']);
  check('1000 keys of /big/ cost no extra read', reads <= 2, true);

  // Paging: two at a time, resumed from the cursor, gives the same children once each.
  const paged = [];
  let cursor = null;
  for (let i = 0; i < 10; i++) {
    answer = await tree.listChildren(range, k('/'), sep, cursor, 2);
    paged.push(...names(answer.children));
    cursor = answer.cursor;
    if (!cursor) break;
  }
  check('paged', paged, ['/a', '/b/ (dir)', '/big/ (dir)', '/c/ (dir)']);

  answer = await tree.listChildren(range, k('/big/'), sep, null, 3);
  check('first page of /big/', names(answer.children), ['/big/0000', '/big/0001', '/big/0002']);
  check('more of /big/', answer.cursor !== null, true);

  answer = await tree.listChildren(range, k('\xff\xff/'), sep, null, 10);
  check('under 0xff 0xff /', names(answer.children), ['\xff\xff/k']);

  check('prefixEnd a\xff', s(bytes.prefixEnd(k('a\xff'))), 'b');
  check('prefixEnd \xff\xff', Array.from(bytes.prefixEnd(k('\xff\xff'))), [0]);
  check('display', bytes.display(Uint8Array.from([0x61, 0xff, 0x0a])), 'a\\xff\\x0a');
  check('hex round trip', Array.from(bytes.parseHex('00 ff\n7f')), [0, 255, 127]);
  check('hex refused', bytes.parseHex('0g'), null);
  check('diff', diff.lineDiff('a\nb\nc', 'a\nx\nc').map((l) => l.op + l.text), [' a', '-b', '+x', ' c']);
  check('diff of equal', diff.lineDiff('same', 'same').map((l) => l.op), [' ']);
  check('diff too large', diff.lineDiff('a\n'.repeat(3000), 'b\n'.repeat(3000)), null);
  // The member's surfaces are found beside the page, also under a proxy's path prefix.
  check('root at /ui/', api.rootOf('/ui/'), '');
  check('root under a prefix', api.rootOf('/etcd/ui/'), '/etcd');
  check('root of /ui', api.rootOf('/a/b/ui'), '/a/b');
  check('this page', api.ROOT, '');
  done(failures);
})().catch((e) => done([`threw: ${e}`]));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_helpers_list_trees_and_diff_values() {
    let Some(browser) = Browser::start("helpers").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &["--enable-ui"]).await;
    browser.goto(&format!("{}/ui/", member.client_url)).await;
    let failures = browser
        .client
        .execute_async(HELPERS_SCRIPT, vec![])
        .await
        .expect("run the helpers' checks");
    assert_eq!(failures, json!([]), "the page's helpers");
    browser.finish().await;
}

/// Leases (TTL counting down, attached keys, revoke), users and roles, metrics charts, and the
/// operations: compact, defragment, snapshot download (etcd's format: its SHA-256 trailer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_leases_users_metrics_and_runs_operations() {
    let Some(browser) = Browser::start("operations").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &["--enable-ui"]).await;
    let url = member.client_url.clone();
    let mut client = member.client().await;
    let lease = client
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    client
        .kv
        .put(PutRequest {
            key: b"/leased/key".to_vec(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .unwrap();
    common::add_user_with_permission(
        &mut client,
        ("alice", "pw"),
        "app",
        PermType::Readwrite,
        (b"/app/", b"/app0"),
    )
    .await;

    // Leases: the TTL counts down from what the member said, the key is named.
    browser.goto(&format!("{url}/ui/#/leases")).await;
    let row = format!("#leases tr[data-lease='{lease:x}']");
    browser.wait_text(&row, "/leased/key").await;
    browser.wait_text(&row, "600 s").await;
    browser
        .wait(
            "the TTL to count down",
            &format!("/^59\\d s$/.test(document.querySelector(\"{row} .ttl\")?.textContent)"),
        )
        .await;
    browser.shot("01-leases").await;
    browser.click(&format!("{row} button")).await;
    browser
        .wait_text(
            "#confirm .confirm-detail",
            "Its 1 attached keys are deleted",
        )
        .await;
    browser.click("#confirm-ok").await;
    browser.wait_text("#leases-status", "revoked").await;
    assert!(client.get("/leased/key").await.unwrap().kvs.is_empty());

    // Users and roles.
    browser.goto(&format!("{url}/ui/#/access")).await;
    browser.wait_text("#users", "alice").await;
    browser
        .wait_text("#roles", "READWRITE /app/* (prefix)")
        .await;

    // Metrics: sampled by the page.
    browser.goto(&format!("{url}/ui/#/metrics")).await;
    browser.wait_text("#chart-db-size strong", "KiB").await;
    // Writes while the page samples: the rate of committed proposals goes above zero.
    let writer = {
        let mut client = client.clone();
        tokio::spawn(async move {
            for i in 0.. {
                if client.put("/metrics-load", format!("{i}")).await.is_err() {
                    break;
                }
            }
        })
    };
    browser
        .wait(
            "a rate of committed proposals above zero",
            "Number(document.querySelector('#chart-proposals-committed strong')?.textContent) > 0",
        )
        .await;
    writer.abort();
    browser.shot("02-metrics").await;

    // Compact to the current revision: older revisions can no longer be read.
    for i in 0..5 {
        client.put("/app/k", format!("v{i}")).await.unwrap();
    }
    let revision = client.get("/app/k").await.unwrap().header.unwrap().revision;
    browser.goto(&format!("{url}/ui/#/operations")).await;
    browser
        .type_into("#compact-revision", &revision.to_string())
        .await;
    browser.click("#compact-run").await;
    browser
        .wait_text(
            "#confirm .confirm-detail",
            &format!("before revision {revision}"),
        )
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text("#ops-status", &format!("Compacted to revision {revision}"))
        .await;
    let old = client
        .kv
        .range(RangeRequest {
            key: b"/app/k".to_vec(),
            revision: revision - 1,
            ..Default::default()
        })
        .await
        .expect_err("compacted");
    assert!(old.message().contains("compacted"), "{old:?}");

    // Defragment the member.
    browser.click("#ops-defrag").await;
    browser.click("#confirm-ok").await;
    browser.wait_text("#ops-status", "Defragmented").await;

    // A snapshot, saved by the browser, in etcd's format (SHA-256 of the db appended).
    browser.click("#snapshot-download").await;
    browser.wait_text("#ops-status", "downloaded").await;
    browser.shot("03-operations").await;
    let snapshot = wait_for_download(browser.downloads.path()).await;
    let data = std::fs::read(&snapshot).unwrap();
    assert!(data.len() > 32, "{}", data.len());
    let (db, trailer) = data.split_at(data.len() - 32);
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, db).as_ref(),
        trailer,
        "the snapshot's SHA-256 trailer"
    );
    browser.finish().await;
}

/// The one finished file the browser downloads (not a `.crdownload` in progress).
async fn wait_for_download(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "db"))
            .collect();
        if let [file] = done.as_slice() {
            return file.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no download in {}",
            dir.display()
        );
        // The browser writes the file after the page saw it complete: poll the directory.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `etcd grpc-proxy start --enable-ui`: the same console in front of the proxy, its gateway
/// calls going through the proxy's services and forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_works_through_a_grpc_proxy() {
    let Some(browser) = Browser::start("grpc-proxy").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let mut client = member.client().await;
    client.put("/via/proxy", "before").await.unwrap();
    let listen = format!("127.0.0.1:{}", common::free_port());
    let endpoint = member.client_url.trim_start_matches("http://").to_string();
    let _proxy = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args([
                "grpc-proxy",
                "start",
                "--enable-ui",
                "--endpoints",
                &endpoint,
            ])
            .args(["--listen-addr", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn grpc-proxy"),
    );
    let proxy_url = format!("http://{listen}");
    let deadline = Instant::now() + UI_TIMEOUT;
    while TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "the proxy never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    browser.goto(&format!("{proxy_url}/ui/#/keys")).await;
    browser.click_tree("/").await;
    browser.click_tree("/via/").await;
    browser.click_tree("/via/proxy").await;
    browser.wait_text("#key-value-view", "before").await;
    browser.click("#key-edit").await;
    browser.type_into("#key-value", "after").await;
    browser.click("#key-save").await;
    browser.wait_text("#key-message", "Saved at revision").await;
    assert_eq!(value_of(&mut client, "/via/proxy").await, "after");
    // Maintenance is forwarded by the proxy to the member.
    browser.goto(&format!("{proxy_url}/ui/#/operations")).await;
    browser.click("#snapshot-download").await;
    browser.wait_text("#ops-status", "downloaded").await;
    browser.shot("01-through-proxy").await;
    browser.finish().await;
}

/// A child process stopped when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
