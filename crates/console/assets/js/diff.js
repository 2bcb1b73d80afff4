// A line diff between two versions of a value (longest common subsequence), for the history
// view. Bounded: past MAX_CELLS of table the diff is refused rather than freeze the page.

export const MAX_CELLS = 4_000_000;

/// Lines of `a` and `b` as `{op, text}` with op ' ' (both), '-' (only in a), '+' (only in b);
/// null when the values are too large to compare here.
export function lineDiff(a, b) {
  const left = a.split('\n');
  const right = b.split('\n');
  // Common head and tail first: most edits touch a few lines of a long value.
  let head = 0;
  while (head < left.length && head < right.length && left[head] === right[head]) head++;
  let tail = 0;
  while (
    tail < left.length - head &&
    tail < right.length - head &&
    left[left.length - 1 - tail] === right[right.length - 1 - tail]
  ) {
    tail++;
  }
  const l = left.slice(head, left.length - tail);
  const r = right.slice(head, right.length - tail);
  if ((l.length + 1) * (r.length + 1) > MAX_CELLS) return null;
  const width = r.length + 1;
  const lcs = new Uint32Array((l.length + 1) * width);
  for (let i = l.length - 1; i >= 0; i--) {
    for (let j = r.length - 1; j >= 0; j--) {
      lcs[i * width + j] =
        l[i] === r[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const out = left.slice(0, head).map((text) => ({ op: ' ', text }));
  let i = 0;
  let j = 0;
  while (i < l.length && j < r.length) {
    if (l[i] === r[j]) {
      out.push({ op: ' ', text: l[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
      out.push({ op: '-', text: l[i++] });
    } else {
      out.push({ op: '+', text: r[j++] });
    }
  }
  while (i < l.length) out.push({ op: '-', text: l[i++] });
  while (j < r.length) out.push({ op: '+', text: r[j++] });
  for (const text of left.slice(left.length - tail)) out.push({ op: ' ', text });
  return out;
}
