// The keys view: a tree by separator or a flat prefix listing (both paged, never the whole
// keyspace), a key's value and metadata, create / edit / delete with a compare on the mod
// revision, prefix deletes that name their count, the key's history, and live updates from a
// watch on every key.

import { api, b64, ApiError } from './api.js';
import {
  after, display, rangeStart, equal, fromBase64, fromText, hexDump, idHex, parseHex, prefixEnd, toHex, toText, formatBytes,
} from './bytes.js';
import { h, clear, confirmAction, notice, errorText } from './dom.js';
import { listChildren, separatorByte } from './tree.js';
import { showHistory } from './history.js';

/// Children listed per directory before "more".
const TREE_PAGE = 100;
/// Keys per page of the flat listing.
const FLAT_PAGE = 100;
/// Changes per window past which live updates give way to polling.
const BUSY_EVENTS = 1000;
const BUSY_WINDOW_MS = 2000;
const POLL_MS = 5000;
/// Values larger than this are shown cut, with their size.
const SHOW_BYTES_MAX = 256 * 1024;

export function keysView(root) {
  const state = {
    mode: 'tree',
    separator: '/'.charCodeAt(0),
    tree: null,
    flat: { prefix: new Uint8Array(0), cursors: [], cursor: null, page: 0 },
    current: null, // { key, kv, editing, valueMode }
    refreshTimer: null,
    pendingKeys: [],
    watch: null,
  };

  const treeBox = h('div', { id: 'keys-tree', class: 'tree' });
  const flatList = h('ol', { id: 'keys-flat-list', class: 'flat-list' });
  const flatPrefix = h('input', { id: 'keys-flat-prefix', type: 'text', placeholder: 'key prefix, e.g. /registry/', spellcheck: 'false' });
  const flatCount = h('span', { id: 'keys-flat-count', class: 'muted' });
  const flatPrev = h('button', { id: 'keys-flat-prev', type: 'button', disabled: true }, '‹ Prev');
  const flatNext = h('button', { id: 'keys-flat-next', type: 'button', disabled: true }, 'Next ›');
  const flatBox = h(
    'div',
    { id: 'keys-flat', hidden: true },
    h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); startFlat(); } }, flatPrefix, h('button', { type: 'submit' }, 'List')),
    h('div', { class: 'pager' }, flatPrev, flatCount, flatNext),
    flatList,
  );
  const browserNotice = h('p', { id: 'keys-notice', class: 'notice', hidden: true });
  const separatorInput = h('input', { id: 'keys-separator', type: 'text', value: '/', maxlength: '1', size: '2', title: 'tree separator (one byte)' });
  const modeTree = h('button', { type: 'button', id: 'keys-mode-tree', class: 'toggle active' }, 'Tree');
  const modeFlat = h('button', { type: 'button', id: 'keys-mode-flat', class: 'toggle' }, 'Prefix');
  const liveBadge = h('span', { id: 'keys-live', class: 'live muted' });
  const detail = h('div', { id: 'key-detail', class: 'key-detail' }, h('p', { class: 'muted' }, 'Select a key, or create one.'));

  clear(
    root,
    h(
      'div',
      { class: 'keys-layout' },
      h(
        'aside',
        { class: 'keys-browser panel' },
        h('div', { class: 'toolbar' }, modeTree, modeFlat, h('label', { class: 'sep' }, 'separator ', separatorInput),
          h('button', { type: 'button', id: 'key-new', class: 'primary', onclick: () => showCreate() }, '+ New key'), liveBadge),
        browserNotice,
        treeBox,
        flatBox,
      ),
      h('section', { class: 'panel detail-panel' }, detail),
    ),
  );

  modeTree.onclick = () => setMode('tree');
  modeFlat.onclick = () => setMode('flat');
  separatorInput.onchange = () => {
    const byte = separatorByte(separatorInput.value);
    if (byte === null) {
      notice(browserNotice, 'error', 'The separator must be one byte.');
      return;
    }
    state.separator = byte;
    loadTree();
  };
  flatNext.onclick = () => flatPage(+1);
  flatPrev.onclick = () => flatPage(-1);

  function setMode(mode) {
    state.mode = mode;
    modeTree.classList.toggle('active', mode === 'tree');
    modeFlat.classList.toggle('active', mode === 'flat');
    treeBox.hidden = mode !== 'tree';
    flatBox.hidden = mode !== 'flat';
    separatorInput.parentElement.hidden = mode !== 'tree';
    if (mode === 'flat' && !flatList.childElementCount) startFlat();
  }

  function showBrowserError(e) {
    notice(browserNotice, 'error', e instanceof ApiError && e.permissionDenied ? `permission denied: ${e.message}` : errorText(e));
  }

  // ---- Tree ----

  function newDir(key) {
    return { key, dir: true, expanded: false, cursor: null, children: new Map(), el: null, ul: null };
  }

  async function loadTree() {
    notice(browserNotice, 'info', '');
    state.tree = newDir(new Uint8Array(0));
    state.tree.expanded = true;
    state.tree.ul = h('ul', { class: 'tree-root' });
    clear(treeBox, state.tree.ul);
    await listInto(state.tree, false);
  }

  /// (Re)lists a directory's children into its list, keeping what was expanded below it.
  async function listInto(dir, more) {
    const start = more ? dir.cursor : null;
    const shown = more ? 0 : Math.max(TREE_PAGE, dir.shownCount || 0);
    let answer;
    try {
      answer = await listChildren((r) => api.range(r), dir.key, state.separator, start, more ? TREE_PAGE : shown);
    } catch (e) {
      showBrowserError(e);
      if (!more) clear(dir.ul, h('li', { class: 'tree-error' }, errorText(e)));
      if (dir === state.tree && e instanceof ApiError && e.permissionDenied) {
        // A user allowed only some prefixes cannot list every key: the prefix view can.
        dir.ul.appendChild(h('li', { class: 'muted' }, 'You may not read every key: list a prefix you may read with Prefix.'));
      }
      return;
    }
    notice(browserNotice, 'info', '');
    const previous = dir.children;
    if (!more) dir.children = new Map();
    const items = [];
    for (const child of answer.children) {
      const id = toHex(child.key);
      const node = previous.get(id) || (child.dir ? newDir(child.key) : { key: child.key, dir: false });
      dir.children.set(id, node);
      items.push(renderNode(node, dir.key));
    }
    dir.cursor = answer.cursor;
    dir.shownCount = dir.children.size;
    if (more) {
      const moreButton = dir.ul.querySelector(':scope > li.tree-more');
      if (moreButton) moreButton.remove();
      for (const item of items) dir.ul.appendChild(item);
    } else {
      clear(dir.ul, items);
      if (items.length === 0) dir.ul.appendChild(h('li', { class: 'muted' }, dir.key.length ? '(empty)' : 'No keys yet.'));
    }
    if (dir.cursor) {
      dir.ul.appendChild(
        h('li', { class: 'tree-more' }, h('button', { type: 'button', class: 'link', onclick: () => listInto(dir, true) }, 'more…')),
      );
    }
    // A directory alone in its parent opens by itself (the usual "/" at the root).
    if (!more && dir.children.size === 1) {
      const only = [...dir.children.values()][0];
      if (only.dir && !only.expanded && !only.collapsedByUser) {
        only.expanded = true;
        only.el.querySelector(':scope > .tree-toggle').textContent = '▾';
        only.ul.hidden = false;
      }
    }
    // Children that were expanded are listed again too.
    for (const node of dir.children.values()) {
      if (node.dir && node.expanded) await listInto(node, false);
    }
  }

  /// A node's list item, made once and kept while the node is listed: a refresh moves the
  /// same elements, so nothing the user is about to click goes away under the pointer.
  function renderNode(node, parentKey) {
    if (node.el) {
      if (!node.dir) node.el.classList.toggle('selected', !!state.current && equal(state.current.key, node.key));
      return node.el;
    }
    const name = display(node.key.slice(parentKey.length)) || '(this key)';
    if (!node.dir) {
      node.el = h(
        'li',
        { class: 'tree-node tree-leaf', dataset: { key: display(node.key) } },
        h('button', { type: 'button', class: 'tree-label', onclick: () => openKey(node.key) }, name),
      );
      if (state.current && equal(state.current.key, node.key)) node.el.classList.add('selected');
      return node.el;
    }
    node.ul = h('ul', { hidden: !node.expanded });
    const toggle = h('button', { type: 'button', class: 'tree-toggle', 'aria-label': 'expand' }, node.expanded ? '▾' : '▸');
    const label = h('button', { type: 'button', class: 'tree-label tree-dir' }, name);
    const flip = async () => {
      node.expanded = !node.expanded;
      node.collapsedByUser = !node.expanded;
      toggle.textContent = node.expanded ? '▾' : '▸';
      node.ul.hidden = !node.expanded;
      if (node.expanded) await listInto(node, false);
    };
    toggle.onclick = flip;
    label.onclick = async () => {
      if (!node.expanded) await flip();
      showDirectory(node.key);
    };
    node.el = h('li', { class: 'tree-node tree-dirnode', dataset: { key: display(node.key) } }, toggle, label, node.ul);
    return node.el;
  }

  /// Lists every expanded directory again after keys changed (from the live watch): one
  /// read per expanded directory, whatever the number of changes.
  async function refreshTree() {
    if (state.tree) await listInto(state.tree, false);
  }

  // ---- Flat listing ----

  async function startFlat() {
    state.flat = { prefix: fromText(flatPrefix.value), cursors: [], cursor: null, page: 0 };
    state.flat.cursor = state.flat.prefix;
    const end = prefixEnd(state.flat.prefix);
    try {
      const counted = await api.range({ key: b64(rangeStart(state.flat.prefix)), range_end: b64(end), count_only: true });
      flatCount.textContent = `${Number(counted.count || 0).toLocaleString()} keys`;
    } catch (e) {
      showBrowserError(e);
      flatCount.textContent = '';
      clear(flatList);
      return;
    }
    await flatPage(0);
  }

  async function flatPage(step) {
    const flat = state.flat;
    if (step < 0) {
      flat.cursors.pop();
      flat.cursor = flat.cursors.pop() || flat.prefix;
    }
    const from = flat.cursor;
    let answer;
    try {
      answer = await api.range({ key: b64(rangeStart(from)), range_end: b64(prefixEnd(flat.prefix)), keys_only: true, limit: FLAT_PAGE });
    } catch (e) {
      showBrowserError(e);
      return;
    }
    notice(browserNotice, 'info', '');
    flat.cursors.push(from);
    const kvs = (answer.kvs || []).map((kv) => fromBase64(kv.key));
    clear(
      flatList,
      kvs.map((key) => h('li', { dataset: { key: display(key) } }, h('button', { type: 'button', class: 'tree-label', onclick: () => openKey(key) }, display(key)))),
    );
    flat.cursor = kvs.length ? after(kvs[kvs.length - 1]) : from;
    flatNext.disabled = !answer.more;
    flatPrev.disabled = flat.cursors.length <= 1;
  }

  // ---- Key detail ----

  async function openKey(key) {
    state.current = { key, kv: null, editing: false, valueMode: state.current?.valueMode || 'text' };
    for (const el of root.querySelectorAll('.tree-node.selected')) el.classList.remove('selected');
    for (const el of root.querySelectorAll('.tree-leaf')) if (el.dataset.key === display(key)) el.classList.add('selected');
    await renderKey();
  }

  async function readKey(key) {
    const answer = await api.range({ key: b64(key) });
    const kv = (answer.kvs || [])[0];
    return kv ? { ...kv, valueBytes: fromBase64(kv.value), header: answer.header } : null;
  }

  async function renderKey(message) {
    const current = state.current;
    if (!current) return;
    current.editing = false;
    const title = h('h2', { class: 'key-title', id: 'key-title' }, display(current.key));
    const status = h('p', { id: 'key-message', class: 'notice', hidden: true });
    let kv;
    try {
      kv = await readKey(current.key);
    } catch (e) {
      if (state.current !== current) return; // another key was opened meanwhile
      clear(detail, title, status);
      notice(status, 'error', e instanceof ApiError && e.permissionDenied ? `permission denied: ${e.message}` : errorText(e));
      return;
    }
    if (state.current !== current) return; // another key was opened meanwhile
    current.kv = kv;
    if (!kv) {
      clear(detail, title, h('p', { class: 'muted' }, 'This key does not exist (deleted, or never written).'), status);
      if (message) notice(status, message.kind, message.text);
      return;
    }
    const meta = h(
      'dl',
      { class: 'meta', id: 'key-meta' },
      h('dt', {}, 'create revision'), h('dd', { id: 'key-create-revision' }, kv.create_revision),
      h('dt', {}, 'mod revision'), h('dd', { id: 'key-mod-revision' }, kv.mod_revision),
      h('dt', {}, 'version'), h('dd', { id: 'key-version' }, kv.version),
      h('dt', {}, 'lease'), h('dd', { id: 'key-lease' }, kv.lease && kv.lease !== '0' ? idHex(kv.lease) : 'none'),
      h('dt', {}, 'size'), h('dd', {}, formatBytes(kv.valueBytes.length)),
    );
    const modes = ['text', 'json', 'hex'].map((mode) =>
      h('button', { type: 'button', class: `toggle${current.valueMode === mode ? ' active' : ''}`, id: `value-mode-${mode}`, onclick: () => { current.valueMode = mode; renderKey(); } }, mode.toUpperCase()),
    );
    const history = h('div', { id: 'key-history', class: 'history' });
    const actions = h(
      'div',
      { class: 'toolbar' },
      h('button', { type: 'button', id: 'key-edit', class: 'primary', onclick: () => showEdit() }, 'Edit'),
      h('button', { type: 'button', id: 'key-delete', class: 'danger', onclick: () => deleteKey() }, 'Delete'),
      h('button', { type: 'button', id: 'key-history-button', onclick: () => { current.historyOpen = true; showHistory(history, current.key, kv); } }, 'History'),
      h('button', { type: 'button', id: 'key-reload', onclick: () => renderKey() }, 'Reload'),
    );
    clear(detail, title, meta, h('div', { class: 'toolbar' }, modes), renderValue(kv.valueBytes, current.valueMode), actions, status, history);
    if (message) notice(status, message.kind, message.text);
    // A history opened on this key stays open when the key is shown again (a live update,
    // a reload, an edit cancelled), read anew from the version now shown.
    if (current.historyOpen) showHistory(history, current.key, kv);
  }

  function renderValue(bytes, mode) {
    const shown = bytes.length > SHOW_BYTES_MAX ? bytes.subarray(0, SHOW_BYTES_MAX) : bytes;
    const cut = bytes.length > SHOW_BYTES_MAX ? h('p', { class: 'muted' }, `Showing the first ${formatBytes(SHOW_BYTES_MAX)} of ${formatBytes(bytes.length)}.`) : null;
    if (mode === 'hex') return h('div', {}, h('pre', { id: 'key-value-view', class: 'value hex' }, hexDump(shown)), cut);
    const text = toText(bytes);
    if (text === null) {
      return h('div', {}, h('p', { class: 'muted' }, 'The value is not UTF-8 text; shown in hex.'), h('pre', { id: 'key-value-view', class: 'value hex' }, hexDump(shown)), cut);
    }
    if (mode === 'json') {
      try {
        return h('pre', { id: 'key-value-view', class: 'value json' }, JSON.stringify(JSON.parse(text), null, 2));
      } catch (e) {
        return h('div', {}, h('p', { class: 'notice notice-error', id: 'key-json-error' }, `Not valid JSON: ${e.message}`), h('pre', { id: 'key-value-view', class: 'value' }, text));
      }
    }
    // The cut may fall inside a character: decode the shown part leniently.
    return h('div', {}, h('pre', { id: 'key-value-view', class: 'value' }, shown === bytes ? text : new TextDecoder().decode(shown)), cut);
  }

  /// The editor: the value as text (or hex pairs for a binary value, or in hex mode), saved
  /// with a transaction that compares the mod revision read, so a concurrent edit is refused
  /// and shown rather than overwritten.
  function showEdit() {
    const current = state.current;
    const kv = current.kv;
    const asHex = current.valueMode === 'hex' || toText(kv.valueBytes) === null;
    let initial = asHex ? toHex(kv.valueBytes).replace(/(.{32})/g, '$1\n').trim() : toText(kv.valueBytes);
    if (!asHex && current.valueMode === 'json') {
      try {
        initial = JSON.stringify(JSON.parse(initial), null, 2);
      } catch {}
    }
    const editor = h('textarea', { id: 'key-value', class: 'editor', spellcheck: 'false', rows: '14' });
    editor.value = initial;
    const status = h('p', { id: 'key-message', class: 'notice', hidden: true });
    const base = h('p', { class: 'muted', id: 'key-edit-base' }, `Editing the version at mod revision ${kv.mod_revision}${asHex ? ' (hex pairs)' : ''}.`);
    const save = h('button', { type: 'button', id: 'key-save', class: 'primary' }, 'Save');
    save.onclick = async () => {
      let value;
      if (asHex) {
        value = parseHex(editor.value);
        if (value === null) return notice(status, 'error', 'Not hex: give pairs of hex digits.');
      } else {
        if (current.valueMode === 'json') {
          try {
            JSON.parse(editor.value);
          } catch (e) {
            return notice(status, 'error', `Not valid JSON: ${e.message}`);
          }
        }
        value = fromText(editor.value);
      }
      save.disabled = true;
      try {
        const answer = await api.call('/kv/txn', {
          compare: [{ key: b64(current.key), target: 'MOD', result: 'EQUAL', mod_revision: String(kv.mod_revision) }],
          success: [{ request_put: { key: b64(current.key), value: b64(value), ignore_lease: kv.lease && kv.lease !== '0' } }],
          failure: [{ request_range: { key: b64(current.key) } }],
        });
        if (answer.succeeded) {
          await renderKey({ kind: 'ok', text: `Saved at revision ${answer.header.revision}.` });
          return;
        }
        const now = answer.responses?.[0]?.response_range?.kvs?.[0];
        if (!now) {
          notice(status, 'error', 'Conflict: the key was deleted since you opened it. Your text is kept; save again to create it.');
          kv.mod_revision = '0';
          kv.lease = '0'; // nothing to keep: a put of a deleted key with ignore_lease fails
        } else {
          notice(
            status,
            'error',
            `Conflict: the key was changed by someone else (mod revision ${kv.mod_revision} → ${now.mod_revision}). ` +
              'Your text is kept; its current value is below. Save again to overwrite it.',
          );
          kv.mod_revision = now.mod_revision;
          kv.valueBytes = fromBase64(now.value);
          clear(base, `Editing over the version at mod revision ${now.mod_revision}. Current value:`);
          base.appendChild(h('pre', { class: 'value', id: 'key-conflict-value' }, toText(kv.valueBytes) ?? hexDump(kv.valueBytes)));
        }
      } catch (e) {
        notice(status, 'error', errorText(e));
      } finally {
        save.disabled = false;
      }
    };
    clear(
      detail,
      h('h2', { class: 'key-title', id: 'key-title' }, display(current.key)),
      base,
      editor,
      h('div', { class: 'toolbar' }, save, h('button', { type: 'button', id: 'key-cancel', onclick: () => renderKey() }, 'Cancel')),
      status,
    );
    current.editing = true;
    editor.focus();
  }

  function showCreate(prefix = '') {
    const key = h('input', { id: 'new-key', type: 'text', value: prefix, spellcheck: 'false', placeholder: '/app/config' });
    const value = h('textarea', { id: 'new-value', class: 'editor', rows: '8', spellcheck: 'false' });
    const lease = h('input', { id: 'new-lease', type: 'text', placeholder: 'lease ID in hex (optional)', spellcheck: 'false' });
    const status = h('p', { id: 'key-message', class: 'notice', hidden: true });
    const create = h('button', { type: 'button', id: 'new-create', class: 'primary' }, 'Create');
    create.onclick = async () => {
      if (!key.value) return notice(status, 'error', 'etcdserver: key is not provided');
      let leaseId = '0';
      if (lease.value.trim()) {
        if (!/^[0-9a-fA-F]{1,16}$/.test(lease.value.trim())) return notice(status, 'error', 'A lease ID is up to 16 hex digits.');
        leaseId = BigInt('0x' + lease.value.trim()).toString();
      }
      const k = fromText(key.value);
      try {
        const answer = await api.call('/kv/txn', {
          compare: [{ key: b64(k), target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
          success: [{ request_put: { key: b64(k), value: b64(value.value), lease: leaseId } }],
        });
        if (!answer.succeeded) return notice(status, 'error', 'The key already exists: open it to edit it.');
        await openKey(k);
        notice(detail.querySelector('#key-message'), 'ok', `Created at revision ${answer.header.revision}.`);
      } catch (e) {
        notice(status, 'error', errorText(e));
      }
    };
    clear(
      detail,
      h('h2', {}, 'New key'),
      h('label', { class: 'field' }, 'Key', key),
      h('label', { class: 'field' }, 'Value', value),
      h('label', { class: 'field' }, 'Lease', lease),
      h('div', { class: 'toolbar' }, create),
      status,
    );
    key.focus();
  }

  async function deleteKey() {
    const current = state.current;
    if (!(await confirmAction('Delete key', `Delete the key "${display(current.key)}"? This cannot be undone (its history stays until compacted).`, 'Delete'))) return;
    try {
      const answer = await api.call('/kv/deleterange', { key: b64(current.key) });
      await renderKey({ kind: 'ok', text: `Deleted ${answer.deleted || 0} key at revision ${answer.header.revision}.` });
    } catch (e) {
      notice(detail.querySelector('#key-message'), 'error', errorText(e));
    }
  }

  /// A directory of the tree: how many keys it holds, and deleting them all.
  async function showDirectory(prefix) {
    state.current = null;
    const status = h('p', { id: 'key-message', class: 'notice', hidden: true });
    const count = h('span', { id: 'dir-count' }, '…');
    clear(
      detail,
      h('h2', { class: 'key-title', id: 'key-title' }, display(prefix)),
      h('p', {}, 'Keys under this prefix: ', count),
      h(
        'div',
        { class: 'toolbar' },
        h('button', { type: 'button', onclick: () => showCreate(toText(prefix) ?? '') }, '+ New key here'),
        h('button', { type: 'button', id: 'dir-delete', class: 'danger', onclick: () => deletePrefix(prefix, status) }, 'Delete prefix…'),
      ),
      status,
    );
    try {
      const answer = await api.range({ key: b64(prefix), range_end: b64(prefixEnd(prefix)), count_only: true });
      count.textContent = Number(answer.count || 0).toLocaleString(); // a detached node if the user moved on
    } catch (e) {
      count.textContent = '?';
      notice(status, 'error', errorText(e));
    }
  }

  async function deletePrefix(prefix, status) {
    const end = prefixEnd(prefix);
    let count;
    try {
      const answer = await api.range({ key: b64(prefix), range_end: b64(end), count_only: true });
      count = Number(answer.count || 0);
    } catch (e) {
      return notice(status, 'error', errorText(e));
    }
    const title = `Delete ${count.toLocaleString()} keys`;
    if (!(await confirmAction(title, `Delete all ${count.toLocaleString()} keys under the prefix "${display(prefix)}"?`, title))) return;
    try {
      const answer = await api.call('/kv/deleterange', { key: b64(prefix), range_end: b64(end) });
      notice(status, 'ok', `Deleted ${Number(answer.deleted || 0).toLocaleString()} keys at revision ${answer.header.revision}.`);
      scheduleRefresh([prefix], true);
    } catch (e) {
      notice(status, 'error', errorText(e));
    }
  }

  // ---- Live updates ----

  /// Refreshes, once per burst of changes, the key shown and (when a key appeared or went)
  /// the tree's open directories. A value change alone leaves the tree as it is.
  function scheduleRefresh(keys, structural) {
    state.pendingKeys.push(...keys);
    if (state.pendingKeys.length > 1000) state.pendingKeys = state.pendingKeys.slice(-1000);
    state.pendingStructural = state.pendingStructural || structural;
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(async () => {
      // One refresh at a time: changes arriving meanwhile wait for the next one, so listings
      // never overlap or land out of order.
      if (state.refreshing) {
        state.refreshTimer = null;
        state.refreshAgain = true;
        return;
      }
      const keys = state.pendingKeys;
      const structural = state.pendingStructural;
      state.pendingKeys = [];
      state.pendingStructural = false;
      state.refreshing = true;
      try {
        await refreshOnce(keys, structural);
      } finally {
        state.refreshing = false;
        state.refreshTimer = null;
        if (state.refreshAgain) {
          state.refreshAgain = false;
          scheduleRefresh([], false);
        }
      }
    }, 300);
  }

  async function refreshOnce(keys, structural) {
    {
      if (state.mode === 'tree' && structural) await refreshTree();
      const current = state.current;
      if (current && !current.editing && keys.some((k) => equal(k, current.key))) await renderKey();
      else if (current && current.editing && keys.some((k) => equal(k, current.key))) {
        const base = detail.querySelector('#key-edit-base');
        if (base && !base.dataset.warned) {
          base.dataset.warned = '1';
          base.appendChild(h('span', { class: 'warn' }, ' The key has changed since; saving will show the conflict.'));
        }
      }
    }
  }

  function showLive(text, title) {
    liveBadge.textContent = text;
    liveBadge.title = title;
  }

  /// Watches every key (from the next revision) and refreshes what shows a changed key. A
  /// user who may not watch every key, or a cluster changing faster than a page should
  /// follow (every value of every change comes down the watch), gets polling instead.
  async function liveLoop() {
    const controller = new AbortController();
    state.watch = controller;
    const all = new Uint8Array([0]);
    let windowStart = Date.now();
    let windowEvents = 0;
    while (!controller.signal.aborted) {
      try {
        showLive('● live', 'The tree and the key shown follow changes as they happen.');
        for await (const result of api.stream('/watch', { create_request: { key: b64(all), range_end: b64(all) } }, { signal: controller.signal })) {
          if (result.canceled) {
            // etcd refuses a watch the user may not make by cancelling it, not by an error.
            if (/permission denied/.test(result.cancel_reason || '')) return pollLoop(controller, 'this user may not watch every key');
            break;
          }
          const events = result.events || [];
          if (Date.now() - windowStart > BUSY_WINDOW_MS) {
            windowStart = Date.now();
            windowEvents = 0;
          }
          windowEvents += events.length;
          if (windowEvents > BUSY_EVENTS) {
            return pollLoop(controller, `more than ${BUSY_EVENTS} changes in ${BUSY_WINDOW_MS / 1000} s`);
          }
          const keys = events.map((e) => fromBase64(e.kv?.key));
          const structural = events.some((e) => e.type === 'DELETE' || e.type === 1 || String(e.kv?.version) === '1');
          if (keys.length) scheduleRefresh(keys, structural);
        }
      } catch (e) {
        if (controller.signal.aborted) return;
        if (e instanceof ApiError && e.permissionDenied) return pollLoop(controller, 'this user may not watch every key');
      }
      // The stream ended (member restarting, token expired): try again shortly.
      showLive('○ reconnecting', 'The watch for live updates ended; it is started again.');
      await new Promise((r) => setTimeout(r, 2000));
      // Changes made while the watch was down are read, not watched.
      scheduleRefresh(state.current ? [state.current.key] : [], true);
    }
  }

  async function pollLoop(controller, why) {
    showLive(`↻ every ${POLL_MS / 1000} s`, `Live updates are off (${why}): the tree and the key shown are read again every ${POLL_MS / 1000} s.`);
    controller.abort();
    while (state.watch === controller) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (state.watch !== controller) return;
      if (!document.hidden && !root.hidden) scheduleRefresh(state.current ? [state.current.key] : [], true);
    }
  }

  return {
    async show() {
      if (!state.tree) await loadTree();
      if (!state.watch) liveLoop();
    },
    async reset() {
      state.watch?.abort();
      state.watch = null;
      showLive('', '');
      state.tree = null;
      state.current = null;
      clear(detail, h('p', { class: 'muted' }, 'Select a key, or create one.'));
    },
  };
}

