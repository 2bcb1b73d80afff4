// Keys and values are bytes: etcd allows any, and the gateway carries them as base64. The
// console keeps them as Uint8Array and only decodes them to show them.

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function fromText(text) {
  return encoder.encode(text);
}

/// The bytes as text when they are valid UTF-8, else null.
export function toText(bytes) {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

export function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function fromBase64(text) {
  if (!text) return new Uint8Array(0);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function startsWith(bytes, prefix) {
  if (prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

export function equal(a, b) {
  return a.length === b.length && startsWith(a, b);
}

export function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function indexOf(bytes, byte, from = 0) {
  for (let i = from; i < bytes.length; i++) if (bytes[i] === byte) return i;
  return -1;
}

/// The smallest key after `key`: the key with a zero byte appended.
export function after(key) {
  return concat(key, new Uint8Array([0]));
}

/// A range's start key: etcd refuses an empty key, and "\0" is the first key there is.
export function rangeStart(key) {
  return key.length ? key : new Uint8Array([0]);
}

/// etcd's range end for "every key starting with `prefix`": the prefix with its last byte
/// below 0xff incremented and what follows dropped; all keys (`\0`) when there is none.
export function prefixEnd(prefix) {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] < 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i] += 1;
      return end;
    }
  }
  return new Uint8Array([0]);
}

/// A key as a person reads it: its text, or Go-style escapes for bytes that are not UTF-8 or
/// not printable.
export function display(bytes) {
  const text = toText(bytes);
  if (text !== null && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) return text;
  let out = '';
  for (const b of bytes) {
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0');
  }
  return out;
}

/// A classic hex dump: offset, 16 bytes in hex, the printable ones as text.
export function hexDump(bytes, maxBytes = 64 * 1024) {
  const lines = [];
  const n = Math.min(bytes.length, maxBytes);
  for (let at = 0; at < n; at += 16) {
    const row = bytes.subarray(at, Math.min(at + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${at.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (bytes.length > n) lines.push(`... ${bytes.length - n} more bytes`);
  return lines.join('\n');
}

/// Bytes written as hex pairs (spaces and newlines ignored), or null when that is not hex.
export function parseHex(text) {
  const clean = text.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) return null;
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/// A 64-bit ID (the gateway sends them as decimal strings) in etcdctl's hex.
export function idHex(id) {
  if (id === undefined || id === null || id === '') return '0';
  return BigInt(id).toString(16);
}

export function formatBytes(n) {
  n = Number(n || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}
