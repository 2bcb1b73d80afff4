// Leases: each with its TTL counting down in the page (read again every few seconds), its
// granted TTL and the keys attached to it; revoking one deletes its keys.

import { api } from './api.js';
import { display, fromBase64, idHex } from './bytes.js';
import { h, clear, confirmAction, notice, errorText } from './dom.js';

/// Leases read per page (one TimeToLive call each).
const LEASE_PAGE = 100;
/// Attached keys named per lease before "and N more".
const KEYS_SHOWN = 5;

export function leasesView(root) {
  const status = h('p', { id: 'leases-status', class: 'notice', hidden: true });
  const body = h('tbody', { id: 'leases' });
  const summary = h('p', { class: 'muted', id: 'leases-summary' });
  const more = h('button', { type: 'button', id: 'leases-more', hidden: true }, 'more…');
  let shown = LEASE_PAGE;
  let rows = []; // {id, ttl, readAt, cell}
  let refreshFailed = false;
  clear(
    root,
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Leases'),
      summary,
      status,
      h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, ['ID', 'TTL left', 'granted TTL', 'keys', ''].map((t) => h('th', {}, t)))), body),
      more,
    ),
  );
  more.onclick = () => {
    shown += LEASE_PAGE;
    refresh();
  };

  async function refresh() {
    let ids;
    try {
      const answer = await api.call('/lease/leases', {});
      ids = (answer.leases || []).map((l) => String(l.ID));
    } catch (e) {
      notice(status, 'error', errorText(e));
      refreshFailed = true;
      return;
    }
    // Clears a failed refresh's notice, never a revoke's outcome.
    if (refreshFailed) notice(status, 'info', '');
    refreshFailed = false;
    summary.textContent = `${ids.length.toLocaleString()} leases`;
    more.hidden = ids.length <= shown;
    const page = ids.slice(0, shown);
    const answers = await Promise.all(
      page.map((id) => api.call('/lease/timetolive', { ID: id, keys: true }).catch((e) => ({ error: errorText(e) }))),
    );
    const readAt = Date.now();
    rows = [];
    clear(
      body,
      page.map((id, i) => {
        const a = answers[i];
        const ttlCell = h('td', { class: 'ttl' });
        const keys = (a.keys || []).map((k) => display(fromBase64(k)));
        const row = { id, ttl: Number(a.TTL ?? -1), readAt, cell: ttlCell };
        rows.push(row);
        paint(row);
        return h(
          'tr',
          { dataset: { lease: idHex(id) } },
          h('td', { class: 'mono' }, idHex(id)),
          ttlCell,
          h('td', {}, a.error ? a.error : `${a.grantedTTL ?? '?'} s`),
          h('td', { class: 'lease-keys' }, keys.length ? keys.slice(0, KEYS_SHOWN).join(', ') + (keys.length > KEYS_SHOWN ? ` and ${keys.length - KEYS_SHOWN} more` : '') : h('span', { class: 'muted' }, 'none')),
          h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => revoke(id, keys.length) }, 'Revoke…')),
        );
      }),
    );
  }

  function paint(row) {
    if (row.ttl < 0) {
      row.cell.textContent = 'expired';
      return;
    }
    const left = Math.max(0, row.ttl - Math.floor((Date.now() - row.readAt) / 1000));
    row.cell.textContent = `${left} s`;
  }

  async function revoke(id, keyCount) {
    if (!(await confirmAction('Revoke lease', `Revoke lease ${idHex(id)}? Its ${keyCount} attached keys are deleted.`, 'Revoke'))) return;
    try {
      await api.call('/lease/revoke', { ID: id });
      notice(status, 'ok', `Lease ${idHex(id)} revoked.`);
      await refresh();
    } catch (e) {
      notice(status, 'error', errorText(e));
    }
  }

  return {
    show: refresh,
    refresh,
    tick() {
      for (const row of rows) paint(row);
    },
    reset() {},
  };
}
