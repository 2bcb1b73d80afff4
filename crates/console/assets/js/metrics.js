// A few of /metrics' series as small charts, sampled by the page every SAMPLE_MS while the
// view is open: counters as rates, histograms as the mean of the last interval.

import { ROOT } from './api.js';
import { formatBytes } from './bytes.js';
import { h, clear, notice, errorText } from './dom.js';

export const SAMPLE_MS = 2000;
/// Samples kept per chart (the last few minutes).
const SAMPLES_MAX = 90;

/// Prometheus' text format: every sample's value summed per metric name (labels dropped).
export function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    sums.set(match[1], (sums.get(match[1]) || 0) + value);
  }
  return sums;
}

const CHARTS = [
  { id: 'proposals-committed', title: 'proposals committed /s', rate: 'etcd_server_proposals_committed_total' },
  { id: 'proposals-failed', title: 'proposals failed /s', rate: 'etcd_server_proposals_failed_total' },
  { id: 'wal-fsync', title: 'WAL fsync, mean ms', mean: 'etcd_disk_wal_fsync_duration_seconds' },
  { id: 'backend-commit', title: 'backend commit, mean ms', mean: 'etcd_disk_backend_commit_duration_seconds' },
  { id: 'db-size', title: 'DB size', gauge: 'etcd_mvcc_db_total_size_in_bytes', bytes: true },
  { id: 'leader-changes', title: 'leader changes seen', gauge: 'etcd_server_leader_changes_seen_total' },
];

export function metricsView(root) {
  const status = h('p', { id: 'metrics-status', class: 'notice', hidden: true });
  const grid = h('div', { class: 'charts' });
  const series = new Map(CHARTS.map((c) => [c.id, []]));
  let previous = null;
  clear(root, h('section', { class: 'panel' }, h('h2', {}, 'Metrics'), h('p', { class: 'muted' }, `This member's /metrics, every ${SAMPLE_MS / 1000} s.`), status, grid));

  async function sample() {
    let text;
    try {
      const response = await fetch(`${ROOT}/metrics`, { cache: 'no-store' });
      text = await response.text();
    } catch (e) {
      notice(status, 'error', errorText(e));
      return;
    }
    notice(status, 'info', '');
    const now = { at: Date.now(), values: parseMetrics(text) };
    for (const chart of CHARTS) {
      const value = valueOf(chart, now, previous);
      if (value === null) continue;
      const points = series.get(chart.id);
      points.push(value);
      if (points.length > SAMPLES_MAX) points.shift();
    }
    previous = now;
    draw();
  }

  function draw() {
    clear(
      grid,
      CHARTS.map((chart) => {
        const points = series.get(chart.id);
        const last = points[points.length - 1];
        const label = last === undefined ? '…' : chart.bytes ? formatBytes(last) : Number.isInteger(last) ? String(last) : last.toFixed(2);
        return h('figure', { class: 'chart', id: `chart-${chart.id}` }, h('figcaption', {}, chart.title, h('strong', {}, label)), sparkline(points));
      }),
    );
  }

  return { show: sample, sample, reset() {} };
}

function valueOf(chart, now, previous) {
  const get = (sample, name) => sample.values.get(name);
  if (chart.gauge) return get(now, chart.gauge) ?? null;
  if (!previous) return null;
  const seconds = (now.at - previous.at) / 1000;
  if (chart.rate) {
    const a = get(previous, chart.rate);
    const b = get(now, chart.rate);
    if (a === undefined || b === undefined || seconds <= 0) return null;
    return Math.max(0, (b - a) / seconds);
  }
  const sum = (s) => get(s, `${chart.mean}_sum`);
  const count = (s) => get(s, `${chart.mean}_count`);
  const n = (count(now) ?? 0) - (count(previous) ?? 0);
  if (n <= 0) return 0;
  return (((sum(now) ?? 0) - (sum(previous) ?? 0)) / n) * 1000;
}

const SVG = 'http://www.w3.org/2000/svg';

function sparkline(points) {
  const width = 240;
  const height = 60;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'sparkline');
  if (points.length < 2) return svg;
  const max = Math.max(...points) || 1;
  const min = Math.min(0, ...points);
  const x = (i) => (i / (SAMPLES_MAX - 1)) * width;
  const y = (v) => height - 2 - ((v - min) / (max - min || 1)) * (height - 4);
  const path = document.createElementNS(SVG, 'polyline');
  path.setAttribute('points', points.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '));
  svg.appendChild(path);
  return svg;
}
