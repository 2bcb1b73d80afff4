// The cluster view: every member with its status as the member itself reports it (leader,
// Raft term and index, DB size and in use, version, errors), its health, and the alarms.
// Each member is asked at its own client URL, as `etcdctl endpoint status --cluster` does.

import { api, memberBase, surface } from './api.js';
import { formatBytes, idHex } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';
import { defragment, members, memberName, moveLeader } from './operations.js';

/// How long one member may take to answer before it shows as unreachable.
const MEMBER_TIMEOUT_MS = 3000;

async function withTimeout(promiseFn) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), MEMBER_TIMEOUT_MS);
  try {
    return await promiseFn(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}

async function health(base, signal) {
  const response = await fetch(`${surface(base)}/health`, { signal, cache: 'no-store' });
  const json = await response.json();
  return json.health === 'true' || json.health === true;
}

export function clusterView(root) {
  const status = h('p', { id: 'cluster-status', class: 'notice', hidden: true });
  const body = h('tbody', { id: 'members' });
  const alarms = h('ul', { id: 'alarms' });
  const summary = h('p', { id: 'cluster-summary', class: 'muted' });
  clear(
    root,
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Members'),
      summary,
      status,
      h(
        'table',
        { class: 'grid' },
        h('thead', {}, h('tr', {}, ['', 'name', 'ID', 'client URLs', 'term', 'raft index', 'DB size', 'in use', 'version', 'health', ''].map((t) => h('th', {}, t)))),
        body,
      ),
      h('h2', {}, 'Alarms'),
      alarms,
    ),
  );

  // The notice shows a failed refresh until one succeeds, and an action's outcome until the
  // next action: a periodic refresh must not wipe "Leadership moved".
  let refreshFailed = false;

  async function refresh() {
    let all;
    try {
      all = await members();
    } catch (e) {
      notice(status, 'error', errorText(e));
      refreshFailed = true;
      return;
    }
    if (refreshFailed) notice(status, 'info', '');
    refreshFailed = false;
    const rows = await Promise.all(all.map((m) => memberRow(m, all)));
    clear(body, rows.map((r) => r.row));
    const leaders = new Set(rows.map((r) => r.leader).filter((l) => l && l !== '0'));
    const local = rows.find((r) => r.local)?.status;
    summary.textContent = [
      local ? `cluster ${idHex(local.header?.cluster_id)}` : null,
      local ? `revision ${local.header?.revision}` : null,
      leaders.size === 1 ? `leader ${memberName(all.find((m) => String(m.ID) === [...leaders][0]) || { ID: [...leaders][0] })}` : leaders.size === 0 ? 'no leader' : 'members disagree on the leader',
      `${all.length} members`,
    ].filter(Boolean).join(' · ');
    try {
      const answer = await api.call('/maintenance/alarm', { action: 'GET' });
      const list = answer.alarms || [];
      clear(alarms, list.length ? list.map((a) => h('li', { class: 'alarm' }, `${a.alarm || 'NONE'} on member ${idHex(a.memberID)}`)) : h('li', { class: 'muted' }, 'No alarm.'));
    } catch (e) {
      clear(alarms, h('li', { class: 'notice-error' }, errorText(e)));
    }
  }

  async function memberRow(member, all) {
    const base = memberBase(member);
    const id = String(member.ID);
    let st = null;
    let err = null;
    let healthy = null;
    if (base === null) {
      err = 'no client URL reachable from this browser';
    } else {
      try {
        [st, healthy] = await Promise.all([
          withTimeout((signal) => api.call('/maintenance/status', {}, { base, signal })),
          withTimeout((signal) => health(base, signal)).catch(() => false),
        ]);
      } catch (e) {
        err = e.name === 'AbortError' ? 'no answer' : errorText(e);
      }
    }
    const isLeader = st && String(st.leader) === id;
    const cells = [
      h('td', {}, isLeader ? h('span', { class: 'leader-flag', title: 'leader' }, '★ leader') : member.isLearner ? h('span', { class: 'learner' }, 'learner') : ''),
      h('td', {}, member.name || '(not started)'),
      h('td', { class: 'mono' }, idHex(id)),
      h('td', { class: 'mono' }, (member.clientURLs || []).join(', ')),
      h('td', {}, st ? st.raftTerm : ''),
      h('td', {}, st ? st.raftIndex : ''),
      h('td', {}, st ? formatBytes(st.dbSize) : ''),
      h('td', {}, st ? formatBytes(st.dbSizeInUse) : ''),
      h('td', {}, st ? st.version : ''),
      h('td', { class: healthy ? 'healthy' : 'unhealthy' }, err ? err : healthy ? 'healthy' : 'unhealthy'),
      h(
        'td',
        {},
        h('button', { type: 'button', class: 'small member-move-leader', disabled: isLeader || member.isLearner, onclick: () => act(() => moveLeader(member, all), `Leadership moved to ${memberName(member)}.`) }, 'Make leader'),
        h('button', { type: 'button', class: 'small member-defrag', disabled: base === null, onclick: () => act(() => defragment(member), `Defragmented ${memberName(member)}.`) }, 'Defragment'),
      ),
    ];
    if (st && st.errors && st.errors.length) cells[9].textContent = st.errors.join('; ');
    const row = h('tr', { dataset: { memberId: idHex(id), leader: isLeader ? 'true' : 'false' } }, cells);
    return { row, status: st, leader: st ? String(st.leader) : null, local: base === '' };
  }

  async function act(fn, done) {
    notice(status, 'info', '');
    try {
      if (await fn()) notice(status, 'ok', done);
      await refresh();
    } catch (e) {
      notice(status, 'error', errorText(e));
    }
  }

  return { show: refresh, refresh, reset() {} };
}
