// Maintenance, each an ordinary API call behind a confirmation: compact, defragment a
// member, move the leader, download a snapshot.

import { api, memberBase } from './api.js';
import { formatBytes, fromBase64, idHex } from './bytes.js';
import { h, clear, confirmAction, notice, errorText } from './dom.js';

export async function members() {
  const answer = await api.call('/cluster/member/list', {});
  return answer.members || [];
}

export function memberName(member) {
  return member.name || idHex(member.ID);
}

/// Moves leadership to `target`: etcd takes the request only at the leader, so it is sent to
/// the leader's client URL.
export async function moveLeader(target, all) {
  const local = await api.status('');
  const leaderId = String(local.leader || '0');
  if (leaderId === '0') throw new Error('no leader: the cluster has no quorum');
  if (leaderId === String(target.ID)) throw new Error(`${memberName(target)} is already the leader`);
  const leader = all.find((m) => String(m.ID) === leaderId);
  const base = leader ? memberBase(leader) : null;
  if (base === null) throw new Error('the leader has no client URL this browser can reach');
  if (!(await confirmAction('Move leader', `Hand leadership from ${leader ? memberName(leader) : idHex(leaderId)} to ${memberName(target)}?`, 'Move leader'))) return false;
  await api.call('/maintenance/transfer-leadership', { targetID: String(target.ID) }, { base });
  return true;
}

export async function defragment(member) {
  const base = memberBase(member);
  if (base === null) throw new Error(`${memberName(member)} has no client URL this browser can reach`);
  if (!(await confirmAction('Defragment', `Defragment ${memberName(member)}'s backend? Requests keep being served while it runs.`, 'Defragment'))) return false;
  await api.call('/maintenance/defragment', {}, { base });
  return true;
}

export function operationsView(root) {
  const status = h('p', { id: 'ops-status', class: 'notice', hidden: true });
  const revision = h('input', { id: 'compact-revision', type: 'number', min: '1' });
  const physical = h('input', { id: 'compact-physical', type: 'checkbox' });
  const memberSelect = h('select', { id: 'ops-member' });
  const snapshotProgress = h('span', { id: 'snapshot-progress', class: 'muted' });
  let all = [];

  const run = (fn) => async () => {
    notice(status, 'info', '');
    try {
      const message = await fn();
      if (message) notice(status, 'ok', message);
    } catch (e) {
      notice(status, 'error', errorText(e));
    }
  };
  const selected = () => all.find((m) => String(m.ID) === memberSelect.value);

  clear(
    root,
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Operations'),
      status,
      h('h3', {}, 'Compact'),
      h('p', { class: 'muted' }, 'Drops the history of every key before a revision. Watches and reads of older revisions then fail.'),
      h('div', { class: 'inline' }, h('label', {}, 'revision ', revision), h('label', {}, physical, ' physical (wait until removed)'),
        h('button', { type: 'button', id: 'compact-run', class: 'danger', onclick: run(compact) }, 'Compact…')),
      h('h3', {}, 'Members'),
      h('div', { class: 'inline' }, memberSelect,
        h('button', { type: 'button', id: 'ops-defrag', onclick: run(async () => (await defragment(selected())) && `Defragmented ${memberName(selected())}.`) }, 'Defragment…'),
        h('button', { type: 'button', id: 'ops-move-leader', onclick: run(async () => (await moveLeader(selected(), all)) && `Leadership moved to ${memberName(selected())}.`) }, 'Make leader…')),
      h('h3', {}, 'Snapshot'),
      h('p', { class: 'muted' }, 'Downloads a point-in-time copy of the whole keyspace, as `etcdctl snapshot save` writes it.'),
      h('div', { class: 'inline' }, h('button', { type: 'button', id: 'snapshot-download', onclick: run(downloadSnapshot) }, 'Download snapshot'), snapshotProgress),
    ),
  );

  async function compact() {
    if (!revision.value) throw new Error('Give the revision to compact to.');
    const rev = String(revision.value);
    if (!(await confirmAction('Compact', `Compact the history before revision ${rev}? Older revisions can no longer be read or watched.`, 'Compact'))) return null;
    await api.call('/kv/compaction', { revision: rev, physical: physical.checked });
    return `Compacted to revision ${rev}.`;
  }

  async function downloadSnapshot() {
    const parts = [];
    let bytes = 0;
    let revisionSeen = '';
    for await (const result of api.stream('/maintenance/snapshot', {})) {
      const blob = fromBase64(result.blob);
      parts.push(blob);
      bytes += blob.length;
      revisionSeen = result.header?.revision || revisionSeen;
      snapshotProgress.textContent = `${formatBytes(bytes)} received, ${formatBytes(result.remaining_bytes || 0)} to go`;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: 'application/octet-stream' }));
    const link = h('a', { href: url, download: `snapshot-${revisionSeen || 'etcd'}.db`, hidden: true });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return `Snapshot of ${formatBytes(bytes)} downloaded.`;
  }

  return {
    async show() {
      try {
        all = await members();
        clear(memberSelect, all.map((m) => h('option', { value: String(m.ID) }, memberName(m))));
        const local = await api.status('');
        if (!revision.value) revision.value = local.header?.revision || '';
      } catch (e) {
        notice(status, 'error', errorText(e));
      }
    },
    reset() {},
  };
}
