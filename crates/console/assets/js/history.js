// A key's history: its versions since it was last created, read newest first with a range at
// the revision before each version's (one cheap read per version, never a scan of the
// history), back to its creation, the compaction point or MAX_VERSIONS; and a line diff
// between any two versions.

import { api, b64, ApiError } from './api.js';
import { fromBase64, toText, display } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';
import { lineDiff } from './diff.js';

/// Versions read at most (one range each).
export const MAX_VERSIONS = 100;

/// The versions of `key` from `latest` (its current kv) back: `{versions (oldest first),
/// compacted, truncated}`.
export async function readHistory(key, latest) {
  const versions = [toVersion(latest)];
  const created = Number(latest.create_revision || 0);
  let mod = Number(latest.mod_revision || 0);
  let compacted = false;
  while (versions.length < MAX_VERSIONS && mod - 1 >= created) {
    let answer;
    try {
      answer = await api.range({ key: b64(key), revision: String(mod - 1) });
    } catch (e) {
      if (e instanceof ApiError && e.compacted) {
        compacted = true;
        break;
      }
      throw e;
    }
    const kv = (answer.kvs || [])[0];
    if (!kv || Number(kv.create_revision) !== created) break;
    versions.push(toVersion(kv));
    mod = Number(kv.mod_revision);
  }
  const truncated = !compacted && versions.length >= MAX_VERSIONS && mod - 1 >= created;
  return { versions: versions.reverse(), compacted, truncated, created };
}

function toVersion(kv) {
  return {
    deleted: false,
    modRevision: Number(kv.mod_revision || 0),
    createRevision: Number(kv.create_revision || 0),
    version: Number(kv.version || 0),
    value: kv.valueBytes || fromBase64(kv.value),
  };
}

/// The history panel for `key`, whose current kv is `latest`.
export async function showHistory(container, key, latest) {
  const message = h('p', { class: 'notice', hidden: true });
  clear(container, h('h3', {}, 'History'), h('p', { class: 'muted' }, 'Loading…'));
  let history;
  try {
    history = await readHistory(key, latest);
  } catch (e) {
    clear(container, h('h3', {}, 'History'), message);
    notice(message, 'error', errorText(e));
    return;
  }
  const versions = history.versions.slice().reverse(); // newest first
  const diffOut = h('div', { class: 'diff', id: 'history-diff' });
  const rows = versions.map((v, i) =>
    h(
      'tr',
      { dataset: { revision: String(v.modRevision) } },
      h('td', {}, h('input', { type: 'radio', name: 'diff-a', value: String(i), checked: i === 1 || (versions.length === 1 && i === 0) })),
      h('td', {}, h('input', { type: 'radio', name: 'diff-b', value: String(i), checked: i === 0 })),
      h('td', {}, String(v.modRevision)),
      h('td', {}, v.deleted ? 'deleted' : `v${v.version}`),
      h('td', { class: 'value-preview' }, v.deleted ? '' : preview(v.value)),
    ),
  );
  const table = h(
    'table',
    { class: 'grid', id: 'history-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'A'), h('th', {}, 'B'), h('th', {}, 'revision'), h('th', {}, 'version'), h('th', {}, 'value'))),
    h('tbody', {}, rows),
  );
  const showDiff = () => {
    const a = container.querySelector('input[name=diff-a]:checked');
    const b = container.querySelector('input[name=diff-b]:checked');
    if (!a || !b) return;
    renderDiff(diffOut, versions[Number(a.value)], versions[Number(b.value)]);
  };
  table.addEventListener('change', showDiff);
  const notes = [];
  notes.push(`Versions since the key was created at revision ${history.created}.`);
  if (history.compacted) notes.push('Older versions are compacted.');
  if (history.truncated) notes.push(`Only the newest ${MAX_VERSIONS} are shown.`);
  clear(container, h('h3', {}, `History (${versions.length} versions)`), notes.length ? h('p', { class: 'muted' }, notes.join(' ')) : null, table, diffOut);
  if (versions.length > 0) showDiff();
}

function preview(bytes) {
  const text = toText(bytes);
  const shown = text === null ? `${bytes.length} bytes (binary)` : text;
  return shown.length > 80 ? shown.slice(0, 80) + '…' : shown;
}

function renderDiff(out, a, b) {
  const textOf = (v) => (v.deleted ? '' : toText(v.value) ?? display(v.value));
  const lines = lineDiff(textOf(a), textOf(b));
  if (lines === null) {
    clear(out, h('p', { class: 'muted' }, 'These versions are too large to compare here.'));
    return;
  }
  const changed = lines.filter((l) => l.op !== ' ').length;
  clear(
    out,
    h('p', { class: 'muted' }, `revision ${a.modRevision} → ${b.modRevision}: ${changed} lines changed`),
    h(
      'pre',
      {},
      lines.map((l) => h('span', { class: l.op === '+' ? 'diff-add' : l.op === '-' ? 'diff-del' : 'diff-same' }, `${l.op} ${l.text}\n`)),
    ),
  );
}
