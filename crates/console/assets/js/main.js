// The console's shell: tabs routed by the URL's hash, the login dialog (shown whenever the
// server asks for a user), and the timers that refresh the open view.

import { api } from './api.js';
import { h, clear, every, errorText } from './dom.js';
import { keysView } from './keys.js';
import { watchView } from './watch.js';
import { clusterView } from './cluster.js';
import { leasesView } from './leases.js';
import { accessView } from './access.js';
import { metricsView } from './metrics.js';
import { operationsView } from './operations.js';
import { SAMPLE_MS } from './metrics.js';

const TABS = [
  ['keys', 'Keys', keysView],
  ['watch', 'Watch', watchView],
  ['cluster', 'Cluster', clusterView],
  ['leases', 'Leases', leasesView],
  ['access', 'Users & roles', accessView],
  ['metrics', 'Metrics', metricsView],
  ['operations', 'Operations', operationsView],
];

const views = new Map();
let active = null;

function start() {
  const nav = document.getElementById('tabs');
  const main = document.getElementById('views');
  for (const [id, title, make] of TABS) {
    nav.appendChild(h('a', { href: `#/${id}`, id: `tab-${id}`, class: 'tab' }, title));
    const root = h('div', { id: `view-${id}`, class: 'view', hidden: true });
    main.appendChild(root);
    views.set(id, { root, view: make(root) });
  }
  window.addEventListener('hashchange', route);
  api.subscribe((event) => {
    if (event === 'login-required') showLogin();
    if (event === 'login-changed') {
      paintUser();
      for (const { view } of views.values()) view.reset();
      route();
    }
  });
  document.getElementById('login-form').addEventListener('submit', login);
  document.getElementById('logout').addEventListener('click', () => api.logout());
  document.getElementById('login-open').addEventListener('click', showLogin);
  document.getElementById('endpoint').textContent = location.host;
  paintUser();
  route();

  const visible = (id) => () => active === id && !document.hidden;
  every(3000, () => views.get('cluster').view.refresh(), visible('cluster'));
  every(10_000, () => views.get('leases').view.refresh(), visible('leases'));
  every(1000, () => views.get('leases').view.tick(), visible('leases'));
  every(SAMPLE_MS, () => views.get('metrics').view.sample(), visible('metrics'));
}

function route() {
  const id = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'keys';
  const entry = views.get(id) || views.get('keys');
  const name = views.has(id) ? id : 'keys';
  for (const [other, { root }] of views) {
    root.hidden = other !== name;
    document.getElementById(`tab-${other}`).classList.toggle('active', other === name);
  }
  const first = active !== name;
  active = name;
  if (first || name === 'keys') entry.view.show();
}

function paintUser() {
  document.getElementById('user').textContent = api.user ? `logged in as ${api.user}` : '';
  document.getElementById('logout').hidden = !api.user;
  document.getElementById('login-open').hidden = !!api.user;
}

function showLogin() {
  const dialog = document.getElementById('login');
  if (dialog.open) return;
  document.getElementById('login-error').hidden = true;
  dialog.showModal();
  document.getElementById('login-user').focus();
}

async function login(event) {
  event.preventDefault();
  const error = document.getElementById('login-error');
  const button = document.getElementById('login-submit');
  button.disabled = true;
  try {
    await api.login(document.getElementById('login-user').value, document.getElementById('login-password').value);
    document.getElementById('login-password').value = '';
    document.getElementById('login').close();
  } catch (e) {
    clear(error, errorText(e));
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

start();
