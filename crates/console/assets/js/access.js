// Users and roles, as the logged-in user may see them (listing them needs the root role once
// auth is on; a refusal is shown as the server words it).

import { api } from './api.js';
import { display, fromBase64, prefixEnd, equal } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';

/// A permission's key range as etcdctl prints it: one key, a prefix, or [key, end).
export function rangeText(perm) {
  const key = fromBase64(perm.key);
  const end = fromBase64(perm.range_end);
  if (end.length === 0) return display(key);
  if (end.length === 1 && end[0] === 0) return `[${display(key)}, <open ended>)`;
  if (equal(end, prefixEnd(key))) return `${display(key)}* (prefix)`;
  return `[${display(key)}, ${display(end)})`;
}

export function accessView(root) {
  const status = h('p', { id: 'access-status', class: 'notice', hidden: true });
  const users = h('tbody', { id: 'users' });
  const roles = h('tbody', { id: 'roles' });
  clear(
    root,
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Users'),
      status,
      h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, h('th', {}, 'user'), h('th', {}, 'roles'))), users),
      h('h2', {}, 'Roles'),
      h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, h('th', {}, 'role'), h('th', {}, 'permissions'))), roles),
    ),
  );

  async function refresh() {
    notice(status, 'info', '');
    try {
      const userList = (await api.call('/auth/user/list', {})).users || [];
      const details = await Promise.all(userList.map((name) => api.call('/auth/user/get', { name }).catch(() => ({ roles: ['?'] }))));
      clear(users, userList.map((name, i) => h('tr', {}, h('td', {}, name), h('td', {}, (details[i].roles || []).join(', ') || h('span', { class: 'muted' }, 'none')))));
      const roleList = (await api.call('/auth/role/list', {})).roles || [];
      const perms = await Promise.all(roleList.map((role) => api.call('/auth/role/get', { role }).catch(() => ({ perm: [] }))));
      clear(
        roles,
        roleList.map((role, i) =>
          h('tr', {}, h('td', {}, role), h('td', {}, (perms[i].perm || []).map((p) => h('div', {}, `${p.permType || 'READ'} ${rangeText(p)}`)))),
        ),
      );
    } catch (e) {
      notice(status, 'error', errorText(e));
    }
  }

  return { show: refresh, reset() {} };
}
