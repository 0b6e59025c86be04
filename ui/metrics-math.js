// Arithmetic of the status page over prom-client's JSON (GET /metrics/json):
// no DOM, so test/unit/status-math.test.ts checks it against real prom-client
// output. A sample is { at, instance, metrics: Map<name, values[]> }.

/**
 * One poll's answer as a sample: the metric families by name, and which
 * process answered (host:pid, and when it started: a restart is another one).
 */
export function sampleOf(json, at) {
  const metrics = new Map(json.map((family) => [family.name, family.values]));
  const info = values(metrics, 's3dedup_instance_info')[0];
  const instance = info ? String(info.labels.instance) : '';
  return { at, instance, process: info ? `${instance}@${info.labels.started}` : '', metrics };
}

export function count(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

export function bytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function perSecond(n) {
  if (!Number.isFinite(n)) return '—';
  return `${n < 10 ? n.toFixed(2) : n.toFixed(0)}/s`;
}

export function duration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

/** The values of one metric (by its metricName for histogram parts), filtered by labels. */
export function values(metrics, name, keep = () => true) {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const family = metrics.get(name) ?? metrics.get(base) ?? [];
  const histogramPart = base !== name;
  return family.filter((v) => (!histogramPart || v.metricName === name) && keep(v.labels));
}

export function total(metrics, name, keep) {
  return values(metrics, name, keep).reduce((sum, v) => sum + v.value, 0);
}

/** Increase of a counter between two samples (a restart in between reads as the new value). */
export function increase(older, newer, name, keep) {
  const now = total(newer.metrics, name, keep);
  const before = total(older.metrics, name, keep);
  return now >= before ? now - before : now;
}

export function byLabel(metrics, name, label) {
  const out = new Map();
  for (const v of values(metrics, name)) {
    const key = String(v.labels[label]);
    out.set(key, (out.get(key) ?? 0) + v.value);
  }
  return out;
}

export function listed(map, format = count) {
  const parts = [...map].filter(([, n]) => n > 0).map(([k, n]) => `${format(n)} ${k}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/**
 * A quantile from the increase of histogram buckets between two samples,
 * interpolated linearly inside the bucket it falls in (as histogram_quantile).
 */
export function quantile(q, older, newer, keep) {
  const name = 's3dedup_http_request_duration_seconds_bucket';
  const cumulative = new Map();
  for (const [sample, sign] of [
    [newer, 1],
    [older, -1],
  ]) {
    for (const v of values(sample.metrics, name, keep)) {
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      cumulative.set(le, (cumulative.get(le) ?? 0) + sign * v.value);
    }
  }
  const buckets = [...cumulative].sort((a, b) => a[0] - b[0]);
  const all = buckets.at(-1)?.[1] ?? 0;
  if (all <= 0) return Number.NaN;
  const rank = q * all;
  let lower = 0;
  let below = 0;
  for (const [le, n] of buckets) {
    if (n >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(n - below, 1e-9);
    }
    lower = le;
    below = n;
  }
  return lower;
}
