// The watch panel: a watch on a key or prefix, from the next revision or a past one, with
// its events listed as they arrive. The list is bounded: past MAX_EVENTS the oldest go.

import { api, b64 } from './api.js';
import { display, fromBase64, fromText, prefixEnd, toText } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';

export const MAX_EVENTS = 1000;

export function watchView(root) {
  const key = h('input', { id: 'watch-key', type: 'text', placeholder: 'key or prefix', spellcheck: 'false' });
  const isPrefix = h('input', { id: 'watch-prefix', type: 'checkbox', checked: true });
  const from = h('input', { id: 'watch-from', type: 'number', min: '1', placeholder: 'next revision' });
  const prevKv = h('input', { id: 'watch-prev-kv', type: 'checkbox' });
  const start = h('button', { type: 'submit', id: 'watch-start', class: 'primary' }, 'Watch');
  const stop = h('button', { type: 'button', id: 'watch-stop', disabled: true }, 'Stop');
  const clearButton = h('button', { type: 'button', id: 'watch-clear' }, 'Clear');
  const status = h('p', { id: 'watch-status', class: 'notice', hidden: true });
  const counter = h('span', { id: 'watch-count', class: 'muted' }, '');
  const list = h('ol', { id: 'watch-events', class: 'events', reversed: true });
  let controller = null;
  let received = 0;

  clear(
    root,
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Watch'),
      h(
        'form',
        { class: 'inline', onsubmit: (e) => { e.preventDefault(); begin(); } },
        key,
        h('label', {}, isPrefix, ' prefix'),
        h('label', {}, 'from revision ', from),
        h('label', {}, prevKv, ' previous value'),
        start,
        stop,
        clearButton,
      ),
      status,
      h('p', {}, counter),
      list,
    ),
  );
  stop.onclick = () => end('Stopped.');
  clearButton.onclick = () => {
    clear(list);
    received = 0;
    counter.textContent = '';
  };

  async function begin() {
    end();
    const k = key.value ? fromText(key.value) : new Uint8Array([0]);
    const request = { key: b64(k), prev_kv: prevKv.checked };
    if (isPrefix.checked || !key.value) request.range_end = b64(key.value ? prefixEnd(k) : new Uint8Array([0]));
    if (from.value) request.start_revision = String(from.value);
    controller = new AbortController();
    const mine = controller;
    start.disabled = true;
    stop.disabled = false;
    notice(status, 'info', `Watching ${key.value ? `"${key.value}"${isPrefix.checked ? ' and the keys under it' : ''}` : 'every key'}…`);
    try {
      for await (const result of api.stream('/watch', { create_request: request }, { signal: mine.signal })) {
        if (result.canceled) {
          const why = result.compact_revision && Number(result.compact_revision) > 0
            ? `the revision was compacted; the oldest kept is ${result.compact_revision}`
            : result.cancel_reason || 'cancelled by the server';
          throw new Error(`Watch cancelled: ${why}.`);
        }
        if (result.created) notice(status, 'ok', `Watching (watch ${result.watch_id || 0}, at revision ${result.header?.revision}).`);
        for (const event of result.events || []) add(event);
      }
      if (!mine.signal.aborted) end('The server ended the watch.');
    } catch (e) {
      if (!mine.signal.aborted) end(errorText(e), 'error');
    }
  }

  function add(event) {
    received++;
    const kv = event.kv || {};
    const deleted = event.type === 'DELETE' || event.type === 1;
    const value = toText(fromBase64(kv.value));
    const item = h(
      'li',
      { class: deleted ? 'event event-delete' : 'event event-put', dataset: { key: display(fromBase64(kv.key)), revision: String(kv.mod_revision || '') } },
      h('span', { class: 'event-type' }, deleted ? 'DELETE' : 'PUT'),
      h('span', { class: 'event-key' }, display(fromBase64(kv.key))),
      h('span', { class: 'event-rev muted' }, `rev ${kv.mod_revision}`),
      deleted ? null : h('span', { class: 'event-value' }, value === null ? '(binary)' : value.length > 120 ? value.slice(0, 120) + '…' : value),
      event.prev_kv ? h('span', { class: 'event-prev muted' }, `was: ${toText(fromBase64(event.prev_kv.value)) ?? '(binary)'}`) : null,
    );
    list.insertBefore(item, list.firstChild);
    while (list.childElementCount > MAX_EVENTS) list.lastChild.remove();
    counter.textContent = `${received.toLocaleString()} events${received > MAX_EVENTS ? ` (newest ${MAX_EVENTS} shown)` : ''}`;
  }

  function end(message, kind = 'info') {
    if (controller) controller.abort();
    controller = null;
    start.disabled = false;
    stop.disabled = true;
    if (message) notice(status, kind, message);
  }

  return { show() {}, reset() { end(); } };
}
