// A key's history: every put and delete of it in revisions not yet compacted, read with a
// watch from the oldest revision still kept (a watch from before the compaction is cancelled
// naming it, and asked again from there), and a line diff between any two versions.

import { api, b64 } from './api.js';
import { fromBase64, toText, display } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';
import { lineDiff } from './diff.js';

/// Versions kept in the page at most (the newest); older ones are counted, not shown.
export const MAX_VERSIONS = 500;
/// How long the history waits for the watch to deliver the newest version.
const HISTORY_TIMEOUT_MS = 10_000;

/// Every event of `key` from `fromRevision` up to `untilRevision` (the key's current mod
/// revision): `{versions, dropped, compactRevision}`.
export async function readHistory(key, untilRevision) {
  let from = 1;
  for (let attempt = 0; attempt < 3; attempt++) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), HISTORY_TIMEOUT_MS);
    const versions = [];
    let dropped = 0;
    let compacted = null;
    try {
      for await (const result of api.stream(
        '/watch',
        { create_request: { key: b64(key), start_revision: String(from) } },
        { signal: controller.signal },
      )) {
        if (result.canceled && result.compact_revision && Number(result.compact_revision) > 0) {
          compacted = Number(result.compact_revision);
          break;
        }
        for (const event of result.events || []) {
          versions.push(toVersion(event));
          if (versions.length > MAX_VERSIONS) {
            versions.shift();
            dropped++;
          }
        }
        const last = versions[versions.length - 1];
        if (last && last.modRevision >= untilRevision) return { versions, dropped, compactRevision: from > 1 ? from : null };
      }
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
      return { versions, dropped, compactRevision: from > 1 ? from : null, incomplete: true };
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    if (compacted === null) return { versions, dropped, compactRevision: from > 1 ? from : null, incomplete: true };
    from = compacted;
  }
  throw new Error('the history moved while it was read; try again');
}

function toVersion(event) {
  const kv = event.kv || {};
  return {
    deleted: event.type === 'DELETE' || event.type === 1,
    modRevision: Number(kv.mod_revision || 0),
    createRevision: Number(kv.create_revision || 0),
    version: Number(kv.version || 0),
    value: fromBase64(kv.value),
  };
}

/// The history panel for `key`, at most up to `untilRevision`.
export async function showHistory(container, key, untilRevision) {
  const message = h('p', { class: 'notice', hidden: true });
  clear(container, h('h3', {}, 'History'), h('p', { class: 'muted' }, 'Loading…'));
  let history;
  try {
    history = await readHistory(key, untilRevision);
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
  if (history.compactRevision) notes.push(`Revisions before ${history.compactRevision} are compacted.`);
  if (history.dropped) notes.push(`${history.dropped} older versions not shown.`);
  if (history.incomplete) notes.push('The history may be incomplete (the watch did not reach the current version in time).');
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
