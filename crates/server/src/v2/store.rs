//! The v2 store: etcd 3.4's hierarchical key space of files and directories, with TTLs,
//! compare-and-swap/delete, in-order keys, hidden `_` names, an index that every change moves
//! by one, and the history and watchers that follow it.
//!
//! Deterministic: the clock enters only through the `now` parameters, which shape answers
//! (the `ttl` seconds shown) and never the state; expiry happens when a replicated SYNC
//! names a cutoff time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::{V2Error, code};
use super::event::{Action, Event, History, NodeView};
use super::path;
use super::watch::WatcherHub;

/// Expiration times before 2000-01-01 are taken as "never" (etcd: a zero time that went
/// through JavaScript).
const MIN_EXPIRE_UNIX_NANOS: i64 = 946_684_800_000_000_000;

/// The namespaces etcd creates: members (`/0`) and users' keys (`/1`); both, and the root,
/// are read-only.
pub const KEYS_PREFIX: &str = "/1";
const NAMESPACES: [&str; 2] = ["/0", "/1"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(String),
    Dir(BTreeMap<String, Node>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub created_index: u64,
    pub modified_index: u64,
    /// Unix nanoseconds; `None` for a permanent node.
    pub expire: Option<i64>,
    pub kind: Kind,
}

impl Node {
    fn dir(path: &str, index: u64, expire: Option<i64>) -> Node {
        Node {
            path: path.to_string(),
            created_index: index,
            modified_index: index,
            expire,
            kind: Kind::Dir(BTreeMap::new()),
        }
    }

    fn file(path: &str, value: &str, index: u64, expire: Option<i64>) -> Node {
        Node {
            path: path.to_string(),
            created_index: index,
            modified_index: index,
            expire,
            kind: Kind::File(value.to_string()),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub fn value(&self) -> &str {
        match &self.kind {
            Kind::File(v) => v,
            Kind::Dir(_) => "",
        }
    }

    fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    fn name(&self) -> &str {
        path::split(&self.path).1
    }

    /// The expiration and the whole seconds left, rounded up (etcd's expirationAndTTL).
    fn expiration_and_ttl(&self, now: i64) -> (Option<i64>, i64) {
        match self.expire {
            None => (None, 0),
            Some(expire) => {
                let left = i128::from(expire) - i128::from(now);
                let mut ttl = left / 1_000_000_000;
                if left % 1_000_000_000 > 0 {
                    ttl += 1;
                }
                (Some(expire), ttl as i64)
            }
        }
    }

    /// The node as answers show it; a directory lists its children (not the hidden ones)
    /// when `recursive`, in key order.
    fn view(&self, recursive: bool, now: i64) -> NodeView {
        let mut view = NodeView::new(&self.path, self.modified_index, self.created_index);
        (view.expiration, view.ttl) = self.expiration_and_ttl(now);
        match &self.kind {
            Kind::File(value) => view.value = Some(value.clone()),
            Kind::Dir(children) => {
                view.dir = true;
                if recursive {
                    view.nodes = visible_children(children)
                        .map(|c| c.view(true, now))
                        .collect();
                }
            }
        }
        view
    }

    /// What a get answers: a directory always lists its children, recursively on request.
    fn get_view(&self, recursive: bool, now: i64) -> NodeView {
        let mut view = self.view(false, now);
        if let Kind::Dir(children) = &self.kind {
            view.nodes = visible_children(children)
                .map(|c| c.view(recursive, now))
                .collect();
        }
        view
    }

    /// Every path in this subtree, children before their directory.
    fn paths_post_order(&self, out: &mut Vec<(String, Option<i64>)>) {
        if let Kind::Dir(children) = &self.kind {
            for child in children.values() {
                child.paths_post_order(out);
            }
        }
        out.push((self.path.clone(), self.expire));
    }
}

fn visible_children(children: &BTreeMap<String, Node>) -> impl Iterator<Item = &Node> {
    children
        .values()
        .filter(|c| !path::is_hidden_name(c.name()))
}

/// When a write makes its node expire, and whether it only refreshes the TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TtlOptions {
    /// Unix nanoseconds; `None` for permanent.
    pub expire: Option<i64>,
    pub refresh: bool,
}

/// Success and failure counts per operation (`/v2/stats/store`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub gets: (u64, u64),
    pub sets: (u64, u64),
    pub deletes: (u64, u64),
    pub updates: (u64, u64),
    pub creates: (u64, u64),
    pub compare_and_swaps: (u64, u64),
    pub compare_and_deletes: (u64, u64),
    pub expires: u64,
}

fn count<T>(counter: &mut (u64, u64), result: &Result<T, V2Error>) {
    if result.is_ok() {
        counter.0 += 1;
    } else {
        counter.1 += 1;
    }
}

/// What changed since the last `take_changes`, for the backend.
#[derive(Debug, Default)]
pub struct Changes {
    /// Paths whose node was written or removed.
    pub paths: BTreeSet<String>,
    /// Events added to the history.
    pub events: Vec<Arc<Event>>,
}

pub struct Store {
    root: Node,
    index: u64,
    /// (expiration, path) of every node with a TTL, soonest first.
    ttl_keys: BTreeSet<(i64, String)>,
    history: History,
    hub: WatcherHub,
    changes: Changes,
    stats: Stats,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let mut root = Node::dir("/", 0, None);
        let children = root.children_mut().expect("the root is a directory");
        for ns in NAMESPACES {
            children.insert(ns[1..].to_string(), Node::dir(ns, 0, None));
        }
        Store {
            root,
            index: 0,
            ttl_keys: BTreeSet::new(),
            history: History::default(),
            hub: WatcherHub::default(),
            changes: Changes::default(),
            stats: Stats::default(),
        }
    }

    /// The store index: how many changes it has seen.
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn watcher_count(&self) -> usize {
        self.hub.count()
    }

    /// The soonest expiration of any node, if one has a TTL.
    pub fn next_expiry(&self) -> Option<i64> {
        self.ttl_keys.first().map(|(t, _)| *t)
    }

    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    fn read_only(p: &str) -> bool {
        p == "/" || NAMESPACES.contains(&p)
    }

    fn root_read_only(&self) -> V2Error {
        V2Error::new(code::ROOT_READ_ONLY, "/", self.index)
    }

    /// The node at a clean path (etcd's internalGet).
    fn lookup(&self, p: &str) -> Result<&Node, V2Error> {
        let mut current = &self.root;
        for name in path::components(p) {
            let Some(children) = current.children() else {
                return Err(V2Error::new(code::NOT_DIR, &current.path, self.index));
            };
            current = children.get(name).ok_or_else(|| {
                V2Error::new(
                    code::KEY_NOT_FOUND,
                    path::join(&current.path, name),
                    self.index,
                )
            })?;
        }
        Ok(current)
    }

    fn lookup_mut(&mut self, p: &str) -> Option<&mut Node> {
        let mut current = &mut self.root;
        for name in path::components(p) {
            current = current.children_mut()?.get_mut(name)?;
        }
        Some(current)
    }

    /// The directory at `dir`, created (with its missing parents) at the next index
    /// (etcd's walk with checkDir).
    fn ensure_dir(&mut self, dir: &str) -> Result<&mut Node, V2Error> {
        let next = self.index + 1;
        let index = self.index;
        let changes = &mut self.changes;
        let mut current = &mut self.root;
        for name in path::components(dir) {
            let parent_path = current.path.clone();
            let Some(children) = current.children_mut() else {
                return Err(V2Error::new(code::NOT_DIR, parent_path, index));
            };
            let child = children.entry(name.to_string()).or_insert_with(|| {
                let p = path::join(&parent_path, name);
                changes.paths.insert(p.clone());
                Node::dir(&p, next, None)
            });
            if !child.is_dir() {
                return Err(V2Error::new(code::NOT_DIR, &child.path, index));
            }
            current = child;
        }
        Ok(current)
    }

    /// Takes the node at a clean path out of the tree, with its subtree, and reports every
    /// removed path to the watchers of that path (`event` is the delete or expire).
    fn detach(&mut self, p: &str, event: &Arc<Event>) -> Option<Node> {
        let (parent, name) = path::split(p);
        let node = self.lookup_mut(parent)?.children_mut()?.remove(name)?;
        let mut removed = Vec::new();
        node.paths_post_order(&mut removed);
        for (removed_path, expire) in removed {
            if let Some(expire) = expire {
                self.ttl_keys.remove(&(expire, removed_path.clone()));
            }
            // The removed node's own watchers hear of it when the event is published (etcd
            // told stream watchers of that path twice).
            if removed_path != p {
                self.hub.notify_path(event, &removed_path, true);
            }
            self.changes.paths.insert(removed_path);
        }
        Some(node)
    }

    /// Removes the node at `p` as etcd's node.Remove: a directory only with `dir`, a
    /// non-empty one only with `recursive`.
    fn remove(
        &mut self,
        p: &str,
        dir: bool,
        recursive: bool,
        event: &Arc<Event>,
    ) -> Result<(), V2Error> {
        let node = self.lookup(p)?;
        if let Some(children) = node.children() {
            if !dir {
                return Err(V2Error::new(code::NOT_FILE, p, self.index));
            }
            if !children.is_empty() && !recursive {
                return Err(V2Error::new(code::DIR_NOT_EMPTY, p, self.index));
            }
        }
        self.detach(p, event);
        Ok(())
    }

    fn set_expire(&mut self, p: &str, expire: Option<i64>) {
        let Some(node) = self.lookup_mut(p) else {
            return;
        };
        let old = std::mem::replace(&mut node.expire, expire);
        if let Some(old) = old {
            self.ttl_keys.remove(&(old, p.to_string()));
        }
        if let Some(new) = expire {
            self.ttl_keys.insert((new, p.to_string()));
        }
    }

    /// Adds a change to the history and offers it to the watchers.
    fn publish(&mut self, event: Arc<Event>) {
        self.history.add(event.clone());
        if !event.refresh {
            self.hub.notify(&event);
        }
        self.changes.events.push(event);
    }

    pub fn get(&mut self, p: &str, recursive: bool, now: i64) -> Result<Event, V2Error> {
        let p = path::clean(p);
        let result = self.lookup(&p).map(|node| {
            let mut event = Event::new(Action::Get, &p, node.modified_index, node.created_index);
            event.node = node.get_view(recursive, now);
            event.node.key = p.clone();
            event.etcd_index = self.index;
            event
        });
        count(&mut self.stats.gets, &result);
        result
    }

    pub fn create(
        &mut self,
        p: &str,
        dir: bool,
        value: &str,
        unique: bool,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self
            .internal_create(
                p,
                dir,
                value,
                unique,
                false,
                ttl.expire,
                Action::Create,
                now,
            )
            .map(|mut event| {
                event.etcd_index = self.index;
                let event = Arc::new(event);
                self.publish(event.clone());
                event
            });
        count(&mut self.stats.creates, &result);
        result
    }

    pub fn set(
        &mut self,
        p: &str,
        dir: bool,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self.internal_set(p, dir, value, ttl, now);
        count(&mut self.stats.sets, &result);
        result
    }

    fn internal_set(
        &mut self,
        p: &str,
        dir: bool,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let previous = match self.lookup(&path::clean(p)) {
            Ok(node) => Some(node.view(false, now)),
            Err(e) if e.code == code::KEY_NOT_FOUND => {
                if ttl.refresh {
                    return Err(e);
                }
                None
            }
            Err(e) => return Err(e),
        };
        let value = match (&previous, ttl.refresh) {
            (Some(prev), true) => prev.value.clone().unwrap_or_default(),
            _ => value.to_string(),
        };
        let mut event =
            self.internal_create(p, dir, &value, false, true, ttl.expire, Action::Set, now)?;
        event.etcd_index = self.index;
        event.prev_node = previous;
        event.refresh = ttl.refresh;
        let event = Arc::new(event);
        self.publish(event.clone());
        Ok(event)
    }

    #[allow(clippy::too_many_arguments)]
    fn internal_create(
        &mut self,
        p: &str,
        dir: bool,
        value: &str,
        unique: bool,
        replace: bool,
        expire: Option<i64>,
        action: Action,
        now: i64,
    ) -> Result<Event, V2Error> {
        let (current, next) = (self.index, self.index + 1);
        let p = if unique {
            path::clean(&format!("{p}/{next:020}"))
        } else {
            path::clean(p)
        };
        if Self::read_only(&p) {
            return Err(self.root_read_only());
        }
        let expire = expire.filter(|e| *e >= MIN_EXPIRE_UNIX_NANOS);
        let (dir_path, name) = path::split(&p);
        let (dir_path, name) = (dir_path.to_string(), name.to_string());
        let mut event = Event::new(action, &p, next, next);
        let existing = self
            .ensure_dir(&dir_path)?
            .children()
            .and_then(|c| c.get(&name))
            .map(|n| (n.is_dir(), n.view(false, now)));
        if let Some((is_dir, view)) = existing {
            if !replace {
                return Err(V2Error::new(code::NODE_EXIST, &p, current));
            }
            if is_dir {
                return Err(V2Error::new(code::NOT_FILE, &p, current));
            }
            event.prev_node = Some(view);
            // Replaced in place: no watcher hears of a removal.
            if let Some(old) = self
                .lookup_mut(&dir_path)
                .and_then(|d| d.children_mut())
                .and_then(|c| c.remove(&name))
                && let Some(old_expire) = old.expire
            {
                self.ttl_keys.remove(&(old_expire, p.clone()));
            }
        }
        let node = if dir {
            event.node.dir = true;
            Node::dir(&p, next, expire)
        } else {
            event.node.value = Some(value.to_string());
            Node::file(&p, value, next, expire)
        };
        (event.node.expiration, event.node.ttl) = node.expiration_and_ttl(now);
        if let Some(e) = expire {
            self.ttl_keys.insert((e, p.clone()));
        }
        self.ensure_dir(&dir_path)?
            .children_mut()
            .expect("ensure_dir returns a directory")
            .insert(name, node);
        self.changes.paths.insert(p);
        self.index = next;
        Ok(event)
    }

    pub fn update(
        &mut self,
        p: &str,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self.internal_update(p, value, ttl, now);
        count(&mut self.stats.updates, &result);
        result
    }

    fn internal_update(
        &mut self,
        p: &str,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let p = path::clean(p);
        if Self::read_only(&p) {
            return Err(self.root_read_only());
        }
        let next = self.index + 1;
        let node = self.lookup(&p)?;
        if node.is_dir() && !value.is_empty() {
            return Err(V2Error::new(code::NOT_FILE, &p, self.index));
        }
        let value = if ttl.refresh {
            node.value().to_string()
        } else {
            value.to_string()
        };
        let mut event = Event::new(Action::Update, &p, next, node.created_index);
        event.etcd_index = next;
        event.prev_node = Some(node.view(false, now));
        let is_dir = node.is_dir();
        let node = self.lookup_mut(&p).expect("looked up above");
        if let Kind::File(v) = &mut node.kind {
            *v = value.clone();
            node.modified_index = next;
            event.node.value = Some(value);
        } else {
            event.node.dir = true;
        }
        debug_assert_eq!(is_dir, event.node.dir);
        self.set_expire(&p, ttl.expire);
        let node = self.lookup(&p).expect("looked up above");
        (event.node.expiration, event.node.ttl) = node.expiration_and_ttl(now);
        event.refresh = ttl.refresh;
        self.changes.paths.insert(p);
        self.index = next;
        let event = Arc::new(event);
        self.publish(event.clone());
        Ok(event)
    }

    pub fn compare_and_swap(
        &mut self,
        p: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self.internal_cas(p, prev_value, prev_index, value, ttl, now);
        count(&mut self.stats.compare_and_swaps, &result);
        result
    }

    fn internal_cas(
        &mut self,
        p: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        ttl: TtlOptions,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let p = path::clean(p);
        if Self::read_only(&p) {
            return Err(self.root_read_only());
        }
        let node = self.lookup(&p)?;
        if node.is_dir() {
            return Err(V2Error::new(code::NOT_FILE, &p, self.index));
        }
        compare(node, prev_value, prev_index, self.index)?;
        let value = if ttl.refresh {
            node.value().to_string()
        } else {
            value.to_string()
        };
        let index = self.index + 1;
        let mut event = Event::new(Action::CompareAndSwap, &p, index, node.created_index);
        event.etcd_index = index;
        event.prev_node = Some(node.view(false, now));
        self.index = index;
        let node = self.lookup_mut(&p).expect("looked up above");
        node.kind = Kind::File(value.clone());
        node.modified_index = index;
        self.set_expire(&p, ttl.expire);
        let node = self.lookup(&p).expect("looked up above");
        event.node.value = Some(value);
        (event.node.expiration, event.node.ttl) = node.expiration_and_ttl(now);
        event.refresh = ttl.refresh;
        self.changes.paths.insert(p);
        let event = Arc::new(event);
        self.publish(event.clone());
        Ok(event)
    }

    pub fn delete(
        &mut self,
        p: &str,
        dir: bool,
        recursive: bool,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self.internal_delete(p, dir, recursive, now);
        count(&mut self.stats.deletes, &result);
        result
    }

    fn internal_delete(
        &mut self,
        p: &str,
        dir: bool,
        recursive: bool,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let p = path::clean(p);
        if Self::read_only(&p) {
            return Err(self.root_read_only());
        }
        let dir = dir || recursive;
        let node = self.lookup(&p)?;
        let next = self.index + 1;
        let mut event = Event::new(Action::Delete, &p, next, node.created_index);
        event.etcd_index = next;
        event.prev_node = Some(node.view(false, now));
        event.node.dir = node.is_dir();
        let event = Arc::new(event);
        self.remove(&p, dir, recursive, &event)?;
        self.index = next;
        self.publish(event.clone());
        Ok(event)
    }

    pub fn compare_and_delete(
        &mut self,
        p: &str,
        prev_value: &str,
        prev_index: u64,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let result = self.internal_cad(p, prev_value, prev_index, now);
        count(&mut self.stats.compare_and_deletes, &result);
        result
    }

    fn internal_cad(
        &mut self,
        p: &str,
        prev_value: &str,
        prev_index: u64,
        now: i64,
    ) -> Result<Arc<Event>, V2Error> {
        let p = path::clean(p);
        let node = self.lookup(&p)?;
        if node.is_dir() {
            return Err(V2Error::new(code::NOT_FILE, &p, self.index));
        }
        compare(node, prev_value, prev_index, self.index)?;
        let index = self.index + 1;
        let mut event = Event::new(Action::CompareAndDelete, &p, index, node.created_index);
        event.etcd_index = index;
        event.prev_node = Some(node.view(false, now));
        self.index = index;
        let event = Arc::new(event);
        self.detach(&p, &event);
        self.publish(event.clone());
        Ok(event)
    }

    /// Removes every node whose expiration is at or before `cutoff` (a replicated SYNC),
    /// one expire event each.
    pub fn delete_expired(&mut self, cutoff: i64, now: i64) {
        while let Some((expire, p)) = self.ttl_keys.first().cloned() {
            if expire > cutoff {
                break;
            }
            let Ok(node) = self.lookup(&p) else {
                // Not in the tree: a stale entry, which must not stop the others.
                self.ttl_keys.remove(&(expire, p));
                continue;
            };
            let index = self.index + 1;
            let mut event = Event::new(Action::Expire, &p, index, node.created_index);
            event.etcd_index = index;
            event.prev_node = Some(node.view(false, now));
            event.node.dir = node.is_dir();
            self.index = index;
            let event = Arc::new(event);
            self.detach(&p, &event);
            self.ttl_keys.remove(&(expire, p));
            self.stats.expires += 1;
            self.publish(event);
        }
    }

    /// Starts a watch of `key` from `since` (0: the next change). When the history already
    /// has a matching event, the watcher's queue holds it at once.
    pub fn watch(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<WatchStart, V2Error> {
        let key = path::clean(key);
        let since = if since == 0 { self.index + 1 } else { since };
        let start_index = self.index;
        let mut found = self.history.scan(&key, recursive, since).map_err(|mut e| {
            e.index = self.index;
            e
        })?;
        if !stream {
            if let Some(event) = found.into_iter().next() {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(event);
                return Ok(WatchStart {
                    id: None,
                    key,
                    rx,
                    start_index,
                });
            }
            found = Vec::new();
        }
        // A stream gets what the history has for it, then every later change (etcd's sent the
        // first past event and then nothing more).
        let (id, rx) = self
            .hub
            .add(&key, recursive, stream, since.max(self.index + 1), found);
        Ok(WatchStart {
            id,
            key,
            rx,
            start_index,
        })
    }

    pub fn unwatch(&mut self, key: &str, id: u64) {
        self.hub.remove(key, id);
    }

    /// Ends every watch (the store is being replaced).
    pub fn clear_watchers(&mut self) {
        self.hub.clear();
    }

    /// Every node but the root and the namespaces, parents before children (for saving).
    pub fn nodes(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack: Vec<&Node> = vec![&self.root];
        while let Some(node) = stack.pop() {
            if node.path != "/" && !Self::read_only(&node.path) {
                out.push(node);
            }
            if let Some(children) = node.children() {
                stack.extend(children.values().rev());
            }
        }
        out
    }

    /// The node at a clean path, if any (for saving a changed path).
    pub fn node(&self, p: &str) -> Option<&Node> {
        self.lookup(p).ok()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Rebuilds a store from saved nodes (any order in which parents come before their
    /// children) and events. Nodes whose parent is missing or not a directory are refused.
    pub fn restore(index: u64, nodes: Vec<Node>, events: Vec<Event>) -> Result<Store, String> {
        let mut store = Store::new();
        for mut node in nodes {
            // Children come as records of their own.
            if let Kind::Dir(children) = &mut node.kind {
                children.clear();
            }
            let p = node.path.clone();
            if p != path::clean(&p) || p == "/" || Self::read_only(&p) {
                return Err(format!("v2 store record with a bad path {p:?}"));
            }
            let (parent, name) = path::split(&p);
            let name = name.to_string();
            let expire = node.expire;
            let Some(children) = store.lookup_mut(parent).and_then(|d| d.children_mut()) else {
                return Err(format!("v2 store record {p:?} has no parent directory"));
            };
            if let Some(old) = children.insert(name, node) {
                return Err(format!("v2 store record {:?} appears twice", old.path));
            }
            if let Some(expire) = expire {
                store.ttl_keys.insert((expire, p));
            }
        }
        for event in events {
            store.history.add(Arc::new(event));
        }
        store.index = index;
        Ok(store)
    }
}

/// etcd's node.Compare, with its failure causes.
fn compare(node: &Node, prev_value: &str, prev_index: u64, index: u64) -> Result<(), V2Error> {
    let index_ok = prev_index == 0 || node.modified_index == prev_index;
    let value_ok = prev_value.is_empty() || node.value() == prev_value;
    let cause = match (value_ok, index_ok) {
        (true, true) => return Ok(()),
        (false, true) => format!("[{} != {}]", prev_value, node.value()),
        (true, false) => format!("[{} != {}]", prev_index, node.modified_index),
        (false, false) => format!(
            "[{} != {}] [{} != {}]",
            prev_value,
            node.value(),
            prev_index,
            node.modified_index
        ),
    };
    Err(V2Error::new(code::TEST_FAILED, cause, index))
}

/// A started watch: its queue, and what the hub must forget when it ends (`id`, `key`;
/// `None` when the history answered it at once).
pub struct WatchStart {
    pub id: Option<u64>,
    pub key: String,
    pub rx: mpsc::Receiver<Arc<Event>>,
    /// The store index when the watch began (`X-Etcd-Index`).
    pub start_index: u64,
}
