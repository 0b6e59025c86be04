import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.js';
import {
  byLabel,
  bytes,
  duration,
  increase,
  quantile,
  type Sample,
  sampleOf,
  total,
} from '../../ui/metrics-math.js';

/**
 * The status page's arithmetic (ui/metrics-math.js) over what the server's
 * own registry really answers at /metrics/json (prom-client's JSON): a rate
 * or a latency shown must be the one Prometheus would compute.
 */
describe('status page arithmetic', () => {
  // Through JSON text, as the page receives it: prom-client's objects are
  // its live state, which later counts would change under an older sample.
  const snapshot = async (m: Metrics, at: number): Promise<Sample> =>
    sampleOf(JSON.parse(JSON.stringify(await m.registry.getMetricsAsJSON())), at);
  const files = (labels: Record<string, string | number>) => labels.endpoint === 'files';

  it('takes quantiles from the buckets that grew between two samples, as histogram_quantile does', async () => {
    const m = new Metrics();
    // Before the window: slow requests that must not count.
    for (let i = 0; i < 20; i++) m.http.duration.observe({ method: 'GET', endpoint: 'files' }, 20);
    const older = await snapshot(m, 0);
    for (let i = 0; i < 90; i++)
      m.http.duration.observe({ method: 'GET', endpoint: 'files' }, 0.003);
    for (let i = 0; i < 10; i++) m.http.duration.observe({ method: 'PUT', endpoint: 'files' }, 0.8);
    // The page's own polling, left out by the filter.
    for (let i = 0; i < 500; i++)
      m.http.duration.observe({ method: 'GET', endpoint: 'metrics' }, 9);
    const newer = await snapshot(m, 10_000);
    // 100 in the window: the 50th in (0.0025, 0.005] among 90, the 99th in (0.5, 1] among 10.
    expect(quantile(0.5, older, newer, files)).toBeCloseTo(0.0025 + (0.0025 * 50) / 90, 9);
    expect(quantile(0.99, older, newer, files)).toBeCloseTo(0.5 + (0.5 * 9) / 10, 9);
    // One method alone.
    const puts = (l: Record<string, string | number>) => files(l) && l.method === 'PUT';
    expect(quantile(0.5, older, newer, puts)).toBeCloseTo(0.75, 9);
    // Nothing in the window: no figure rather than a made-up one.
    expect(quantile(0.5, newer, newer, files)).toBeNaN();
  });

  it('counts increases by labels, and a restart as the new process counting from zero', async () => {
    const m = new Metrics();
    const inc = (status: string, n: number) =>
      m.http.requests.inc({ method: 'GET', endpoint: 'files', status }, n);
    inc('200', 40);
    inc('404', 2);
    const older = await snapshot(m, 0);
    inc('200', 25);
    inc('503', 3);
    const newer = await snapshot(m, 5000);
    const req = 's3dedup_http_requests_total';
    expect(increase(older, newer, req)).toBe(28);
    expect(increase(older, newer, req, (l) => Number(l.status) >= 500)).toBe(3);
    expect(total(newer.metrics, req)).toBe(70);
    expect(byLabel(newer.metrics, req, 'status')).toEqual(
      new Map([
        ['200', 65],
        ['404', 2],
        ['503', 3],
      ]),
    );
    const restarted = new Metrics();
    restarted.http.requests.inc({ method: 'GET', endpoint: 'files', status: '200' }, 4);
    expect(increase(newer, await snapshot(restarted, 9000), req)).toBe(4);
  });

  it('names the process that answered, so samples of two instances are never mixed', async () => {
    const a = await snapshot(new Metrics(), 0);
    expect(a.instance).toBe(`${hostname()}:${process.pid}`);
    expect(a.process).toMatch(new RegExp(`^${a.instance}@\\d+$`));
  });

  it('formats sizes and durations as the page shows them', () => {
    expect(bytes(90_000)).toBe('87.9 KiB');
    expect(bytes(5 * 1024 ** 3)).toBe('5.00 GiB');
    expect(bytes(512)).toBe('512 B');
    expect(duration(0.0038)).toBe('3.8 ms');
    expect(duration(0.95)).toBe('950 ms');
    expect(duration(90)).toBe('90.0 s');
    expect(duration(Number.NaN)).toBe('—');
  });
});
