// The status page (GET /ui/): polls ../metrics/json and ../health, keeps the
// samples of the last minute and shows rates and latencies between the oldest
// and the newest, as a Prometheus rate() over a one-minute range would (the
// arithmetic is in metrics-math.js). Plain browser JavaScript modules with no
// dependencies, so the page needs nothing but this server. Everything shown
// is written with textContent (no markup from data).

import {
  byLabel,
  bytes,
  count,
  duration,
  increase,
  listed,
  perSecond,
  quantile,
  sampleOf,
  total,
  values,
} from './metrics-math.js';

const params = new URLSearchParams(location.search);
/** Seconds between polls; ?refresh=N overrides (at least 0.5). */
const REFRESH_S = Math.max(0.5, Number(params.get('refresh')) || 2);
/** Rates and latencies are computed over the samples of this many seconds. */
const WINDOW_S = 60;
/** Endpoints of the page and of monitoring, left out of the traffic figures. */
const OWN_ENDPOINTS = new Set(['metrics', 'ui', 'health']);

/** The samples of the last minute, from one instance (see sampleOf). */
const samples = [];

const $ = (id) => document.getElementById(id);
const show = (id, text) => {
  $(id).textContent = text;
};

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

/** Seconds a poll may take: a server waiting on a failed backend must not freeze the page on old figures. */
const POLL_TIMEOUT_S = 5;

async function fetchJson(path) {
  const response = await fetch(path, {
    cache: 'no-store',
    signal: AbortSignal.timeout(POLL_TIMEOUT_S * 1000),
  });
  // /health answers 503 with its JSON when a dependency fails; any other
  // answer that is not JSON (a proxy's error page, a server shutting down)
  // is reported as it is.
  const json = (response.headers.get('content-type') ?? '').startsWith('application/json');
  if (!json || (!response.ok && response.status !== 503)) {
    const text = (await response.text()).split('\n', 1)[0]?.slice(0, 200) ?? '';
    throw new Error(`${path}: HTTP ${response.status}${text ? ` ${text}` : ''}`);
  }
  return response.json();
}

async function poll() {
  try {
    const [metricsJson, health] = await Promise.all([
      fetchJson('../metrics/json'),
      fetchJson('../health').catch(() => null),
    ]);
    const sample = sampleOf(metricsJson, Date.now());
    // Behind a load balancer a poll may reach another instance, whose
    // counters are its own: rates start over from that one.
    if (samples.length > 0 && samples[0].process !== sample.process) samples.length = 0;
    samples.push(sample);
    while (samples.length > 2 && sample.at - samples[0].at > WINDOW_S * 1000) samples.shift();
    const older = samples.length > 1 ? samples[0] : null;

    show('instance', sample.instance || '—');
    renderStore(sample.metrics);
    renderTraffic(older, sample);
    renderCleaner(sample.metrics);
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
