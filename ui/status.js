// The status page (GET /ui/): polls ../metrics/json and ../health, keeps the
// samples of the last minute and shows rates and latencies between the oldest
// and the newest, as a Prometheus rate() over a one-minute range would. Plain
// browser JavaScript with no dependencies, so the page needs nothing but this
// server. Everything shown is written with textContent (no markup from data).

const params = new URLSearchParams(location.search);
/** Seconds between polls; ?refresh=N overrides (at least 0.5). */
const REFRESH_S = Math.max(0.5, Number(params.get('refresh')) || 2);
/** Rates and latencies are computed over the samples of this many seconds. */
const WINDOW_S = 60;
/** Endpoints of the page and of monitoring, left out of the traffic figures. */
const OWN_ENDPOINTS = new Set(['metrics', 'ui', 'health']);

/** @type {{at: number, metrics: Map<string, Array<{labels: Record<string, string|number>, value: number, metricName?: string}>>}[]} */
const samples = [];

const $ = (id) => document.getElementById(id);
const show = (id, text) => {
  $(id).textContent = text;
};

function count(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

function bytes(n) {
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

function perSecond(n) {
  if (!Number.isFinite(n)) return '—';
  return `${n < 10 ? n.toFixed(2) : n.toFixed(0)}/s`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

/** The values of one metric (by its metricName for histogram parts), filtered by labels. */
function values(metrics, name, keep = () => true) {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const family = metrics.get(name) ?? metrics.get(base) ?? [];
  const histogramPart = base !== name;
  return family.filter((v) => (!histogramPart || v.metricName === name) && keep(v.labels));
}

function total(metrics, name, keep) {
  return values(metrics, name, keep).reduce((sum, v) => sum + v.value, 0);
}

/** Increase of a counter between two samples (a restart in between reads as the new value). */
function increase(older, newer, name, keep) {
  const now = total(newer.metrics, name, keep);
  const before = total(older.metrics, name, keep);
  return now >= before ? now - before : now;
}

function byLabel(metrics, name, label) {
  const out = new Map();
  for (const v of values(metrics, name)) {
    const key = String(v.labels[label]);
    out.set(key, (out.get(key) ?? 0) + v.value);
  }
  return out;
}

function listed(map, format = count) {
  const parts = [...map].filter(([, n]) => n > 0).map(([k, n]) => `${format(n)} ${k}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/**
 * A quantile from the increase of histogram buckets between two samples,
 * interpolated linearly inside the bucket it falls in (as histogram_quantile).
 */
function quantile(q, older, newer, keep) {
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

const fileTraffic = (labels) => !OWN_ENDPOINTS.has(String(labels.endpoint));

function renderStore(m) {
  const one = (name) => {
    const vs = values(m, name);
    return vs.length > 0 ? vs[0].value : Number.NaN;
  };
  show('files', count(one('s3dedup_total_files')));
  show('blobs', count(one('s3dedup_total_blobs')));
  show('logical', bytes(one('s3dedup_total_logical_size_bytes')));
  show('stored', bytes(one('s3dedup_total_storage_bytes')));
  show('saved', bytes(one('s3dedup_deduplicated_bytes_saved')));
  const savings = one('s3dedup_storage_savings_ratio');
  show(
    'savings',
    Number.isFinite(savings) ? `${(savings * 100).toFixed(1)}% of the files' size` : '—',
  );
  const ratio = one('s3dedup_deduplication_ratio');
  show('ratio', Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '—');
}

function renderTraffic(older, newer) {
  const m = newer.metrics;
  show('uploads', count(total(m, 's3dedup_uploads_in_flight')));
  show('upload-bytes', `${bytes(total(m, 's3dedup_upload_bytes_in_flight'))} received so far`);
  const rejections = byLabel(m, 's3dedup_checksum_rejections_total', 'reason');
  show('rejections', `uploads refused by their checks: ${listed(rejections)}`);
  const backend = byLabel(m, 's3dedup_backend_errors_total', 'backend');
  show('backend-errors', `backend failures: ${listed(backend)}`);
  $('backend-errors').classList.toggle('bad', backend.size > 0);

  const rows = $('methods');
  if (!older) return;
  const seconds = (newer.at - older.at) / 1000;
  show('window', duration(seconds));
  const req = 's3dedup_http_requests_total';
  const status = (from, to) => (l) =>
    fileTraffic(l) && Number(l.status) >= from && Number(l.status) < to;
  show('rate', perSecond(increase(older, newer, req, fileTraffic) / seconds));
  const serverErrors = increase(older, newer, req, status(500, 600)) / seconds;
  show('errors', perSecond(serverErrors));
  $('errors').classList.toggle('bad', serverErrors > 0);
  show(
    'client-errors',
    `${perSecond(increase(older, newer, req, status(400, 500)) / seconds)} refused (4xx)`,
  );
  const p50 = quantile(0.5, older, newer, fileTraffic);
  const p99 = quantile(0.99, older, newer, fileTraffic);
  show('latency', `${duration(p50)} / ${duration(p99)}`);
  const hits = increase(older, newer, 's3dedup_dedup_hits_total');
  const misses = increase(older, newer, 's3dedup_dedup_misses_total');
  show('hits', perSecond(hits / seconds));
  show(
    'hit-share',
    hits + misses > 0
      ? `${((hits / (hits + misses)) * 100).toFixed(0)}% of stored uploads`
      : 'no uploads stored',
  );

  const methods = new Set(values(m, req, fileTraffic).map((v) => String(v.labels.method)));
  const body = document.createDocumentFragment();
  for (const method of [...methods].sort()) {
    const mine = (l) => fileTraffic(l) && l.method === method;
    const cells = [
      method,
      perSecond(increase(older, newer, req, mine) / seconds),
      perSecond(increase(older, newer, req, (l) => mine(l) && status(400, 500)(l)) / seconds),
      perSecond(increase(older, newer, req, (l) => mine(l) && status(500, 600)(l)) / seconds),
      duration(quantile(0.5, older, newer, mine)),
      duration(quantile(0.99, older, newer, mine)),
    ];
    const tr = document.createElement('tr');
    tr.dataset.method = method;
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  if (methods.size === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = 6;
    td.textContent = 'no requests yet';
    tr.append(td);
    body.append(tr);
  }
  rows.replaceChildren(body);
}

function renderCleaner(m) {
  const last = total(m, 's3dedup_cleaner_last_run_timestamp_seconds');
  show(
    'cleaner-last',
    last > 0 ? `${duration(Date.now() / 1000 - last)} ago` : 'not yet in this instance',
  );
  show('cleaner-runs', listed(byLabel(m, 's3dedup_cleaner_runs_total', 'outcome')));
  const errors = total(m, 's3dedup_cleaner_errors_total');
  show(
    'cleaner-deleted',
    `${count(total(m, 's3dedup_cleaner_deleted_blobs_total'))} contents, ${count(total(m, 's3dedup_cleaner_deleted_orphans_total'))} orphaned objects${errors > 0 ? `; ${count(errors)} runs failed` : ''}`,
  );
  show('cleaner-freed', bytes(total(m, 's3dedup_cleaner_freed_bytes_total')));
}

function renderMigration(older, newer) {
  const m = newer.metrics;
  const files = byLabel(m, 's3dedup_migration_files_total', 'outcome');
  show('migration-files', listed(files));
  show('migration-bytes', bytes(total(m, 's3dedup_migration_bytes_total')));
  show('migration-fallbacks', listed(byLabel(m, 's3dedup_filetracker_fallbacks_total', 'outcome')));
  if (older) {
    const seconds = (newer.at - older.at) / 1000;
    const copied = increase(
      older,
      newer,
      's3dedup_migration_files_total',
      (l) => l.outcome === 'copied',
    );
    const moved = increase(older, newer, 's3dedup_migration_bytes_total');
    show('migration-rate', `${perSecond(copied / seconds)} files, ${bytes(moved / seconds)}/s`);
  }
}

async function fetchJson(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (!response.ok && response.status !== 503) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  try {
    const [metricsJson, health] = await Promise.all([
      fetchJson('../metrics/json'),
      fetchJson('../health').catch(() => null),
    ]);
    const metrics = new Map(metricsJson.map((family) => [family.name, family.values]));
    const sample = { at: Date.now(), metrics };
    samples.push(sample);
    while (samples.length > 2 && sample.at - samples[0].at > WINDOW_S * 1000) samples.shift();
    const older = samples.length > 1 ? samples[0] : null;

    renderStore(metrics);
    renderTraffic(older, sample);
    renderCleaner(metrics);
    renderMigration(older, sample);
    if (health) {
      $('health').dataset.state = health.status;
      show('health', health.status);
      show('uptime', duration(health.uptime_seconds));
      const failing = Object.entries(health.checks).filter(([, s]) => s !== 'ok');
      show('checks', failing.length > 0 ? failing.map(([k, s]) => `${k}: ${s}`).join('; ') : '');
    }
    show('updated', new Date(sample.at).toLocaleTimeString('en-GB'));
    $('problem').hidden = true;
  } catch (err) {
    $('health').dataset.state = 'unreachable';
    show('health', 'unreachable');
    $('problem').hidden = false;
    show('problem', `last refresh failed: ${err.message}`);
  } finally {
    setTimeout(poll, REFRESH_S * 1000);
  }
}

poll();
