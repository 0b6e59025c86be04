import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../support/browser.js';
import { type Deployment, deployment } from '../support/deployment.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { http, metricValue, pyClient } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';

const V = 1_234_567_890;

/**
 * The status page (GET /ui/, issue #13 part 2) in a real headless Chromium,
 * on a server that is live-migrating from an old Filetracker and cleaning
 * every second: what it shows must be what the store holds and what the
 * cleaner and the migration did, and it must keep up without a reload.
 */
describe('status page', () => {
  let d: Deployment;
  let old: FakeFiletracker;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  const requested: string[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    d = await deployment('embedded');
    old = await new FakeFiletracker().start();
    // On the old server: four files, two of them with one content.
    const shared = randomBytes(30_000);
    old.add('old/a', shared, V);
    old.add('old/b', shared, V);
    old.add('old/c', randomBytes(20_000), V);
    old.add('old/d', randomBytes(10_000), V);
    server = await startServerProcess(
      { ...d.env, CLEANER_ENABLED: 'true', CLEANER_INTERVAL: '1', CLEANER_GRACE: '0' },
      ['live-migrate', '--filetracker-url', old.url],
    );
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('request', (r) => requested.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
    });
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await old?.stop();
    await d?.remove();
  });

  const text = (id: string) => () => page.textContent(`#${id}`);

  it('shows the totals, savings, cleaner and migration figures the server has, and follows changes live', async () => {
    // The background copy has brought the old server's files in.
    await expect
      .poll(() => metricValue(server.url, 's3dedup_migration_files_total', '{outcome="copied"}'), {
        timeout: 20_000,
      })
      .toBe(4);
    // The fourth content again (a dedup hit), a new one, then that one deleted:
    // the cleaner (grace 0) deletes its blob within a second or two.
    expect(
      (
        await pyClient.put(
          server.url,
          '/new/dup',
          (
            await pyClient.get(server.url, '/old/d')
          ).content,
          V,
        )
      ).status,
    ).toBe(200);
    expect((await pyClient.put(server.url, '/new/gone', randomBytes(5_000), V)).status).toBe(200);
    expect((await pyClient.delete(server.url, '/new/gone', V + 1)).status).toBe(200);

    await page.goto(`${server.url}/ui/?refresh=0.5`);
    await expect.poll(text('health')).toBe('ok');
    // Which process answered (behind a load balancer, rates are one process's).
    expect(await page.textContent('#instance')).toMatch(new RegExp(`:${server.child.pid}$`));
    // 4 migrated + 1 duplicate; contents: shared, c, d (the deleted one's blob is gone).
    await expect.poll(text('files'), { timeout: 10_000 }).toBe('5');
    await expect.poll(text('blobs'), { timeout: 10_000 }).toBe('3');
    await expect.poll(text('cleaner-deleted'), { timeout: 10_000 }).toMatch(/^1 contents/);
    expect(await page.textContent('#cleaner-runs')).toMatch(/\d+ completed/);
    expect(await page.textContent('#cleaner-last')).toMatch(/ago$/);
    expect(await page.textContent('#migration-files')).toBe('4 copied');
    expect(await page.textContent('#migration-bytes')).toBe('87.9 KiB'); // 30,000×2 + 20,000 + 10,000 bytes

    // The figures are the server's own, formatted.
    const ratio = await metricValue(server.url, 's3dedup_deduplication_ratio');
    expect(ratio).toBeGreaterThan(1);
    expect(await page.textContent('#ratio')).toBe(`${ratio.toFixed(2)}×`);
    const savings = await metricValue(server.url, 's3dedup_storage_savings_ratio');
    expect(await page.textContent('#savings')).toBe(
      `${(savings * 100).toFixed(1)}% of the files' size`,
    );

    // Traffic after the page opened shows in rates and the per-method table, without a reload.
    for (let i = 0; i < 5; i++) {
      expect((await pyClient.put(server.url, `/live/${i}`, randomBytes(1000), V)).status).toBe(200);
    }
    expect((await pyClient.get(server.url, '/live/absent')).status).toBe(404);
    await expect.poll(text('files'), { timeout: 10_000 }).toBe('10');
    await expect
      .poll(() => page.locator('tr[data-method="PUT"] td').first().textContent(), {
        timeout: 10_000,
      })
      .toBe('PUT');
    const putRate = await page.locator('tr[data-method="PUT"] td').nth(1).textContent();
    expect(putRate).toMatch(/^\d+\.\d\d\/s$/);
    expect(Number.parseFloat(putRate ?? '')).toBeGreaterThan(0);
    await expect
      .poll(() => page.locator('tr[data-method="GET"] td').nth(2).textContent())
      .not.toBe('0.00/s'); // the 404 counts as refused
    expect(await page.textContent('#latency')).toMatch(/ms|s/);

    await page.screenshot({ path: 'test-results/status-page.png', fullPage: true });

    // Nothing but this server was asked for anything, and the page reported no error.
    const origin = new URL(server.url).origin;
    expect(requested.length).toBeGreaterThan(3);
    expect(requested.filter((u) => new URL(u).origin !== origin)).toEqual([]);
    expect(problems).toEqual([]);
  }, 60_000);

  it('says so when the server stops answering, and recovers at /ft/ui/ too', async () => {
    const ft = await browser.newPage();
    await ft.goto(`${server.url}/ft/ui/?refresh=0.5`);
    const files = await metricValue(server.url, 's3dedup_total_files');
    await expect.poll(() => ft.textContent('#files')).toBe(String(files));
    // The page's own requests went under /ft.
    await ft.route('**/ft/metrics/json', (route) => route.abort());
    await expect.poll(() => ft.textContent('#health')).toBe('unreachable');
    expect(await ft.isVisible('#problem')).toBe(true);
    await ft.unroute('**/ft/metrics/json');
    await expect.poll(() => ft.textContent('#health')).toBe('ok');
    expect(await ft.isVisible('#problem')).toBe(false);
    await ft.close();
  });

  it('is served with a policy that forbids other origins; /ui redirects to /ui/', async () => {
    const res = await http(`${server.url}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['content-security-policy']).toContain("connect-src 'self'");
    const script = await http(`${server.url}/ft/ui/status.js`);
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
    // Relative, so a prefix a proxy puts in front is kept.
    for (const [from, to] of [
      ['/ui', '/ui/'],
      ['/ft/ui?refresh=5', '/ft/ui/?refresh=5'],
      ['//ui', '/ui/'],
    ] as const) {
      const r = await http(`${server.url}${from}`);
      expect(r.status, from).toBe(302);
      expect(new URL(String(r.headers.location), `${server.url}${from}`).pathname, from).toMatch(
        new RegExp(`^/+${to.split('?')[0]?.slice(1)}$`),
      );
      expect(String(r.headers.location)).toMatch(/^ui\//);
    }
    expect((await http(`${server.url}/ft/ui/?refresh=5`.replace('/?', '?'))).headers.location).toBe(
      'ui/?refresh=5',
    );
  });
});
