// The JSON gateway, as the console's only way to the cluster: every call is a POST of a
// protobuf-JSON message to `/v3/<service>/<method>` with the user's token in `Authorization`,
// exactly what curl or any gateway client sends. Keys and values travel as base64, 64-bit
// numbers as decimal strings.

import { toBase64 } from './bytes.js';

/// Where the member's HTTP surfaces are, for the page's own member: the path before `/ui/`, so
/// the console also works behind a reverse proxy that serves the member under a path prefix
/// (`/etcd/ui/` calls `/etcd/v3/...`). Empty when served at the root.
export function rootOf(pathname) {
  return pathname.replace(/\/ui(\/.*)?$/, '');
}

export const ROOT = rootOf(location.pathname);

/// The URL prefix of a member's surfaces: `base` for another member, ROOT for this one.
export function surface(base) {
  return base === '' ? ROOT : base;
}

const TOKEN_KEY = 'etcd-console-token';
const USER_KEY = 'etcd-console-user';

export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }

  get authRequired() {
    return /user name is empty|invalid auth token|authentication failed/.test(this.message);
  }

  get permissionDenied() {
    return /permission denied/.test(this.message);
  }

  get compacted() {
    return /required revision has been compacted/.test(this.message);
  }
}

/// base64 for a key or value given as bytes or text.
export function b64(value) {
  if (value instanceof Uint8Array) return toBase64(value);
  return toBase64(new TextEncoder().encode(value));
}

class Gateway {
  constructor() {
    this.token = sessionStorage.getItem(TOKEN_KEY) || '';
    this.user = sessionStorage.getItem(USER_KEY) || '';
    // Kept in memory only (never stored): lets an expired simple token be renewed without
    // asking again, as etcd's clients do.
    this.password = null;
    this.listeners = new Set();
  }

  /// `fn(event)` on 'login-required' and 'login-changed'.
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event) {
    for (const fn of this.listeners) fn(event);
  }

  headers() {
    const headers = { 'Content-Type': 'application/json' };
    if (this.token) headers.Authorization = this.token;
    return headers;
  }

  /// One unary call. `base` is another member's client URL (the cluster view asks each
  /// member); by default the member that served the page.
  async call(path, body = {}, { base = '', signal, retried = false } = {}) {
    let response;
    try {
      response = await fetch(`${surface(base)}/v3${path}`, {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify(body),
        signal,
        cache: 'no-store',
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(`cannot reach ${base || 'the server'}: ${e.message}`, 14, 0);
    }
    const text = await response.text();
    let json;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ApiError(text.trim() || response.statusText, 0, response.status);
    }
    if (!response.ok || json.error) {
      const error = new ApiError(json.message || json.error || response.statusText, json.code, response.status);
      if (error.authRequired && !retried && (await this.renew())) {
        return this.call(path, body, { base, signal, retried: true });
      }
      if (error.authRequired) this.emit('login-required');
      throw error;
    }
    return json;
  }

  /// A streaming call (watch, snapshot): yields each `result` as it arrives; an `error` line
  /// is thrown. Stops when `signal` aborts.
  async *stream(path, body = {}, { base = '', signal, retried = false } = {}) {
    const response = await fetch(`${surface(base)}/v3${path}`, {
      method: 'POST',
      headers: this.headers(),
      body: JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
    if (!response.ok) {
      const text = await response.text();
      let message = text;
      try {
        const json = JSON.parse(text);
        message = json.message || (json.error && json.error.message) || json.error || text;
      } catch {}
      const error = new ApiError(message, 0, response.status);
      if (error.authRequired && !retried && (await this.renew())) {
        yield* this.stream(path, body, { base, signal, retried: true });
        return;
      }
      if (error.authRequired) this.emit('login-required');
      throw error;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    let yielded = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (!line) continue;
          const json = JSON.parse(line);
          if (json.error) {
            const error = new ApiError(json.error.message || String(json.error), json.error.grpc_code, json.error.http_code);
            if (error.authRequired && !yielded && !retried && (await this.renew())) {
              yield* this.stream(path, body, { base, signal, retried: true });
              return;
            }
            if (error.authRequired) this.emit('login-required');
            throw error;
          }
          yielded = true;
          yield json.result || {};
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  async login(user, password) {
    await this.authenticate(user, password);
    this.emit('login-changed');
  }

  /// A token for `user`, kept for the next calls. Only a user change (login, logout) resets
  /// the views; a renewed token for the same user changes nothing they show.
  async authenticate(user, password) {
    const answer = await this.call('/auth/authenticate', { name: user, password }, { retried: true });
    this.token = answer.token || '';
    this.user = user;
    this.password = password;
    sessionStorage.setItem(TOKEN_KEY, this.token);
    sessionStorage.setItem(USER_KEY, user);
  }

  logout() {
    this.token = '';
    this.user = '';
    this.password = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    this.emit('login-changed');
  }

  /// A new token for the user who logged in, when the password is still in memory. Calls
  /// that find the token stale together share one Authenticate (a write through Raft).
  renew() {
    if (!this.user || this.password === null) return Promise.resolve(false);
    if (!this.renewing) {
      this.renewing = this.authenticate(this.user, this.password)
        .then(() => true, () => false)
        .finally(() => setTimeout(() => { this.renewing = null; }, 1000));
    }
    return this.renewing;
  }

  // The calls the views share.

  range(request, options) {
    return this.call('/kv/range', request, options);
  }

  status(base) {
    return this.call('/maintenance/status', {}, { base });
  }
}

export const api = new Gateway();

/// A member's first client URL the browser can reach, or '' for the member that served the
/// page (same origin: no CORS needed).
export function memberBase(member) {
  const urls = member.clientURLs || member.client_urls || [];
  for (const url of urls) {
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      continue;
    }
    if (parsed.origin === location.origin) return '';
  }
  for (const url of urls) {
    if (/^https?:\/\//.test(url)) return url.replace(/\/+$/, '');
  }
  return null;
}
