// Listing the children of a "directory" of a flat keyspace without reading all of it.
//
// etcd has no directories: a tree by separator is a view. The children of prefix P are the
// distinct next segments of the keys under P. Reading every key under P would load the whole
// keyspace for the root, so the listing reads keys-only pages and, once it meets a key inside
// a subdirectory P+D+sep, jumps past all of that subdirectory's keys (range from
// prefixEnd(P+D+sep)): one request per page of direct children, however many keys lie below.

import { after, compare, fromBase64, indexOf, prefixEnd, rangeStart } from './bytes.js';
import { b64 } from './api.js';

/// Keys read per request.
export const PAGE_KEYS = 200;

/// Up to `want` children of `prefix`, starting at `cursor` (a key; the prefix itself at
/// first). `range(request)` is the gateway's Range. Returns `{children, cursor}`, where
/// `cursor` is null when the listing is complete. Each child is `{key, dir}`: a directory's
/// key is its prefix including the separator; a leaf's is the full key.
export async function listChildren(range, prefix, separator, cursor, want) {
  const end = prefixEnd(prefix);
  const toEnd = end.length === 1 && end[0] === 0; // "\0": every key from `from` on
  const children = [];
  let from = cursor || prefix;
  while (children.length < want) {
    const answer = await range({
      key: b64(rangeStart(from)),
      range_end: b64(end),
      keys_only: true,
      limit: PAGE_KEYS,
    });
    const kvs = answer.kvs || [];
    let next = null;
    for (const kv of kvs) {
      const key = fromBase64(kv.key);
      if (next && compare(key, next) < 0) continue; // inside a directory already listed
      if (children.length >= want) return { children, cursor: key };
      const at = indexOf(key, separator, prefix.length);
      if (at < 0) {
        children.push({ key, dir: false });
        next = after(key);
      } else {
        const dir = key.slice(0, at + 1);
        children.push({ key: dir, dir: true });
        next = prefixEnd(dir);
        // A directory of 0xff bytes ends the keyspace: nothing lies beyond it.
        if (next.length === 1 && next[0] === 0) return { children, cursor: null };
      }
    }
    if (!answer.more || next === null) return { children, cursor: null };
    if (!toEnd && compare(next, end) >= 0) return { children, cursor: null };
    from = next;
  }
  return { children, cursor: from };
}

/// The separator as one byte (the tree splits on a single byte, '/' by default).
export function separatorByte(text) {
  const bytes = new TextEncoder().encode(text || '/');
  return bytes.length === 1 ? bytes[0] : null;
}

/// The name a child shows under its parent: the part of its key after the parent's prefix.
export function childName(child, prefix) {
  return child.key.slice(prefix.length);
}
