import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startCeph } from '../test/services/ceph.js';
import { startPostgres } from '../test/services/postgres.js';
import { cliNodeFlags } from '../test/support/process.js';
import type { S3Access } from './s3.js';

const run = promisify(execFile);

/** The project folder: the nearest parent holding package.json (this file runs compiled, from dist/bench). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the project folder (no package.json above)');
    dir = parent;
  }
  return dir;
})();

const CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** The bench's bare relay (bench/relay.ts), compiled beside this file. */
export const RELAY = join(ROOT, 'dist', 'bench', 'bench', 'relay.js');

// ---------------------------------------------------------------------------
// Cleanup. Everything the benchmark starts is registered here and undone on
// normal exit, on failure and on Ctrl-C, synchronously: an 'exit' handler
// cannot wait for promises.

const cleanups: (() => void)[] = [];

/** Registers an undo step; returns a function that runs it now (once) instead. */
export function onCleanup(step: () => void): () => void {
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    try {
      step();
    } catch {
      // Best effort: one failed step must not keep the others from running.
    }
  };
  cleanups.push(once);
  return once;
}

export function cleanupAll(): void {
  while (cleanups.length > 0) cleanups.pop()?.();
}

/**
 * Runs a bench program: exit handlers first, then `main`; stops everything
 * it started whether it succeeds or fails, and exits 1 on failure.
 */
export function runBench(name: string, main: () => Promise<void>): void {
  installExitHandlers();
  main().then(
    () => {
      cleanupAll();
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(
        `${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      cleanupAll();
      process.exit(1);
    },
  );
}

/** Runs the cleanup on exit and turns Ctrl-C / SIGTERM into an exit that runs it. */
export function installExitHandlers(): void {
  process.once('exit', cleanupAll);
  const quit = (signal: NodeJS.Signals, code: number) => {
    process.stderr.write(`\n${signal}: stopping the services...\n`);
    cleanupAll();
    process.exit(code);
  };
  process.once('SIGINT', () => quit('SIGINT', 130));
  process.once('SIGTERM', () => quit('SIGTERM', 143));
}

/** One scratch folder for the whole run, removed at the end. */
const scratch = (() => {
  let root: string | undefined;
  return () => {
    if (root === undefined) {
      const made = mkdtempSync(join(tmpdir(), 's3dedup-bench-'));
      root = made;
      onCleanup(() => rmSync(made, { recursive: true, force: true }));
    }
    return root;
  };
})();

let scratchDirs = 0;
/** A fresh folder under the run's scratch folder; remove() deletes it early. */
export function tempDir(label: string): { path: string; remove(): void } {
  const path = join(scratch(), `${label}-${scratchDirs++}`);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------
// Ceph

export interface Ceph extends S3Access {
  /** Processes of the cluster, by role, for CPU accounting. */
  pids: { radosgw: number; osd: number };
  /**
   * Resident memory of the OSD now, in bytes. It holds the stored data (about
   * 2x its size) but also what glibc's allocator keeps after data is deleted,
   * so it does not fall back to zero between scenarios.
   */
  osdRss(): number;
  /** Objects radosgw still keeps in its data pools (object data, multipart parts). */
  storedObjects(): Promise<number>;
  /**
   * Frees deleted objects now. radosgw deletes an object's head at once but
   * hands its tail (everything past the first 4 MiB) to its garbage collector,
   * which by default waits two hours; with a memstore OSD that is RAM held long
   * after the benchmark deleted the data.
   */
  collectGarbage(): Promise<void>;
  stop(): void;
}

/** radosgw's pools that hold object data (the rest is small metadata). */
const DATA_POOLS = ['default.rgw.buckets.data', 'default.rgw.buckets.non-ec'];

export async function startCephCluster(): Promise<Ceph> {
  // startCeph() runs ceph-cluster.sh from beside its own module, which is the
  // compiled copy under dist/bench: put the script there too.
  const compiledScript = fileURLToPath(
    new URL('../test/services/ceph-cluster.sh', import.meta.url),
  );
  copyFileSync(join(ROOT, 'test', 'services', 'ceph-cluster.sh'), compiledScript);

  const ceph = await startCeph();
  onCleanup(() => ceph.stop());
  const conf = join(ceph.dir, 'ceph.conf');
  const pidOf = (name: string) =>
    Number(readFileSync(join(ceph.dir, 'run', `${name}.pid`), 'utf8'));
  const pids = { radosgw: pidOf('client.rgw.test'), osd: pidOf('osd.0') };
  return {
    endpoint: ceph.endpoint,
    accessKey: ceph.accessKey,
    secretKey: ceph.secretKey,
    pids,
    osdRss: () => procStatusBytes(pids.osd, 'VmRSS'),
    storedObjects: async () => {
      let count = 0;
      for (const pool of DATA_POOLS) {
        const { stdout } = await run('rados', ['-c', conf, '-p', pool, 'ls'], {
          maxBuffer: 64 * 1024 * 1024,
        }).catch(() => ({ stdout: '' })); // a pool radosgw has not created yet
        count += stdout.split('\n').filter((l) => l !== '').length;
      }
      return count;
    },
    collectGarbage: async () => {
      await run('radosgw-admin', ['-c', conf, 'gc', 'process', '--include-all'], {
        maxBuffer: 16 * 1024 * 1024,
      });
    },
    stop: ceph.stop,
  };
}

// ---------------------------------------------------------------------------
// PostgreSQL (the scenario with shared metadata and several instances)

export interface Postgres {
  /** Superuser URL of the server's `postgres` database. */
  url: string;
  stop(): void;
}

export async function startPostgresServer(): Promise<Postgres> {
  // As for Ceph: the script must sit beside the compiled module that runs it.
  const compiledScript = fileURLToPath(new URL('../test/services/postgres.sh', import.meta.url));
  copyFileSync(join(ROOT, 'test', 'services', 'postgres.sh'), compiledScript);
  const pg = await startPostgres();
  onCleanup(() => pg.stop());
  return { url: pg.url, stop: pg.stop };
}

// ---------------------------------------------------------------------------
// The s3dedup server, as its own process

export interface ServerProcess {
  url: string;
  pid: number;
  /** Peak resident set size of the process so far (VmHWM), in bytes. */
  peakRss(): number;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts the built CLI (`dist/cli/main.js server`) the way an operator does,
 * configured by environment variables alone, and resolves once it logs that
 * it listens. A process of its own: its memory peak and its CPU time are its
 * own, and a restart per scenario resets the peak.
 */
export async function startServer(
  env: Record<string, string>,
  nodeArgs: string[] = [],
  /** Another script that logs the same `listening` line: the bench's bare relay. */
  script: { path: string; args: string[] } = { path: CLI, args: ['server'] },
): Promise<ServerProcess> {
  // With the flags of the CLI's shebang, as users run it (see cliNodeFlags).
  const child: ChildProcess = spawn(
    process.execPath,
    [...cliNodeFlags(CLI), ...nodeArgs, script.path, ...script.args],
    {
      env: {
        PATH: process.env.PATH ?? '',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        LOG_JSON: 'true',
        LISTEN_ADDRESS: '127.0.0.1',
        LISTEN_PORT: '0',
        // A cleaner pass in the middle of a measurement would measure the cleaner.
        CLEANER_ENABLED: 'false',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const kill = onCleanup(() => child.kill('SIGKILL'));
  let out = '';
  const collect = (d: Buffer) => {
    // Keep the tail only: the output is for error messages.
    out = (out + d.toString()).slice(-64 * 1024);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 60_000);
    const onData = () => {
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'listening' && entry.url) {
            clearTimeout(timer);
            child.stdout?.off('data', onData);
            resolve(entry.url);
            return;
          }
        } catch {
          // A line still being written.
        }
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${out}`));
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('server process has no pid');
  return {
    url,
    pid,
    peakRss: () => procStatusBytes(pid, 'VmHWM'),
    output: () => out,
    stop: async () => {
      await stopGently(child, 'SIGTERM', exited);
      kill();
    },
  };
}

// ---------------------------------------------------------------------------
// nginx: the plain-file-server baseline

export interface Nginx {
  url: string;
  /** The master and its workers, for CPU accounting. */
  pids(): number[];
  stop(): Promise<void>;
}

/** A port free now (nginx is told the port; it cannot report one it picked). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Debian's nginx (package nginx-light) as a plain file server over `dir`:
 * WebDAV PUT and DELETE into files/, sendfile for GETs, a /version location,
 * and every temporary file inside `dir` (so a PUT's body is renamed into
 * place, on one filesystem). What a server that stores the client's bytes
 * without checking or fsyncing them costs on this machine, in the same run.
 */
export async function startNginx(dir: string): Promise<Nginx> {
  const port = await freePort();
  for (const sub of ['www/files', 'body', 'logs']) mkdirSync(join(dir, sub), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root root;' : ''}
worker_processes auto;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'logs', 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_max_body_size 0;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'body')};
  fastcgi_temp_path ${join(dir, 'body')};
  uwsgi_temp_path ${join(dir, 'body')};
  scgi_temp_path ${join(dir, 'body')};
  server {
    listen 127.0.0.1:${port};
    root ${join(dir, 'www')};
    location /files/ {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw;
    }
    location /version {
      default_type application/json;
      return 200 '{"protocol_versions": [2]}';
    }
  }
}
`,
  );
  const child = spawn('nginx', ['-c', conf, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const kill = onCleanup(() => child.kill('SIGKILL'));
  let out = '';
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}:\n${out}`);
    const ok = await fetch(`${url}/version`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 100) throw new Error(`nginx did not answer within 10 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const master = child.pid;
  if (master === undefined) throw new Error('nginx has no pid');
  return {
    url,
    pids: () => {
      const children = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter((p) => p !== '')
        .map(Number);
      return [master, ...children];
    },
    stop: async () => {
      // QUIT: finish what is in flight, then exit (workers too).
      await stopGently(child, 'SIGQUIT', exited);
      kill();
    },
  };
}

/** Asks a child to stop with `signal`, and kills it if it has not exited within 10 s. */
async function stopGently(
  child: ChildProcess,
  signal: NodeJS.Signals,
  exited: Promise<void>,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timeout = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timeout);
}

/** A "kB" field of /proc/PID/status, in bytes. */
export function procStatusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1];
  if (kb === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) * 1024;
}
