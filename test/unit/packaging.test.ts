import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { VARIABLE_NAMES } from '../../src/config/schema.js';

const run = promisify(execFile);
/** COPY and ENV instructions have more than the Instruction type shows. */
type Flagged = { getFlags(): Array<{ getName(): string }> };
type WithProperties = { getProperties(): Array<{ getName(): string; getValue(): string }> };
const ROOT = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');

/**
 * The Docker files (issue #13 part 5), checked with what runs without a
 * Docker engine: docker-compose v1 validates and normalises the compose file,
 * dockerfile-ast parses the Dockerfile, and the configuration each container
 * would get goes through the server's own validation.
 */
describe('Dockerfile', () => {
  const dockerfile = DockerfileParser.parse(read('Dockerfile'));
  const instructions = dockerfile.getInstructions();
  const finalFrom = dockerfile.getFROMs().at(-1);
  const finalStage = instructions.filter(
    (i) => finalFrom && i.getRange().start.line > finalFrom.getRange().start.line,
  );
  const all = (keyword: string, from: Instruction[] = instructions) =>
    from.filter((i) => i.getKeyword() === keyword);
  const json = (i: Instruction | undefined) =>
    JSON.parse(i?.getArgumentsContent()?.replace(/^CMD\s+/, '') ?? 'null') as string[];

  it('builds in one stage and runs in another, as an unprivileged user, with a data volume', () => {
    expect(dockerfile.getFROMs().length).toBeGreaterThanOrEqual(2);
    // The compiler toolchain stays in the build stage.
    expect(finalStage.some((i) => /g\+\+|npm ci/.test(i.getArgumentsContent() ?? ''))).toBe(false);
    const user = all('USER', finalStage).at(-1)?.getArgumentsContent()?.trim();
    expect(user).toBeDefined();
    expect(['root', '0', '0:0']).not.toContain(user);
    expect(json(all('VOLUME', finalStage)[0])).toEqual(['/data']);
    // Plain node, the start the memory bound must hold for (src/runtime/node-flags.ts).
    expect(json(all('CMD', finalStage).at(-1))).toEqual(['node', 'dist/cli/main.js', 'server']);
    expect(JSON.parse(read('package.json')).bin.s3dedup).toBe('dist/cli/main.js');
  });

  it('copies only what exists and what .dockerignore lets into the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const sources = all('COPY')
      .filter((i) => !(i as unknown as Flagged).getFlags().some((f) => f.getName() === 'from'))
      .flatMap((i) =>
        i
          .getArguments()
          .map((a) => a.getValue())
          .slice(0, -1),
      );
    expect(sources).toEqual(expect.arrayContaining(['package-lock.json', 'src', 'ui']));
    for (const source of sources) {
      expect(existsSync(new URL(source, ROOT)), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git', 'data']));
  });

  it('sets only variables the server knows, and a configuration it accepts', () => {
    const env = imageEnv();
    const ours = Object.keys(env).filter((k) => k !== 'NODE_ENV');
    expect(ours.filter((k) => !(VARIABLE_NAMES as string[]).includes(k))).toEqual([]);
    const config = loadConfig({ env });
    // Everything the server writes is under the volume.
    for (const path of [config.SQLITE_PATH, config.STORAGE_PATH, config.TEMP_DIR]) {
      expect(path.startsWith('/data/'), path).toBe(true);
    }
    expect(all('EXPOSE', finalStage)[0]?.getArgumentsContent()?.trim()).toBe(
      String(config.LISTEN_PORT),
    );
  });

  describe('its HEALTHCHECK command', () => {
    let status = 200;
    let server: Server;
    let port = 0;
    beforeAll(async () => {
      server = createServer((req, res) => {
        res.statusCode = req.url === '/health' ? status : 404;
        res.end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(async () => {
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    const healthcheck = () => {
      const args = json(all('HEALTHCHECK', finalStage)[0]);
      expect(args[0]).toBe('node');
      return run(process.execPath, args.slice(1), { env: { LISTEN_PORT: String(port) } }).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
    };

    it('passes when /health answers 200 and fails on 503 or no answer', async () => {
      status = 200;
      expect(await healthcheck()).toBe(0);
      status = 503;
      expect(await healthcheck()).toBe(1);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      expect(await healthcheck()).toBe(1);
    });
  });
});

/** The environment the image's final stage sets (ENV lines). */
function imageEnv(): Record<string, string> {
  const dockerfile = DockerfileParser.parse(read('Dockerfile'));
  const finalFrom = dockerfile.getFROMs().at(-1);
  const env: Record<string, string> = {};
  for (const i of dockerfile.getInstructions()) {
    if (i.getKeyword() !== 'ENV') continue;
    if (finalFrom && i.getRange().start.line < finalFrom.getRange().start.line) continue;
    for (const p of (i as unknown as WithProperties).getProperties())
      env[p.getName()] = p.getValue();
  }
  return env;
}

describe('docker-compose.yml', () => {
  let compose: {
    services: Record<
      string,
      {
        environment?: Record<string, string>;
        ports?: Array<{ published: string | number; target: number }>;
        /** "source:target:mode", as docker-compose v1 prints them. */
        volumes?: string[];
        build?: unknown;
        command?: string[];
      }
    >;
  };
  beforeAll(async () => {
    // docker-compose v1 (Debian's docker-compose) validates against the
    // Compose schema and prints the file normalised; no engine needed.
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], {
      cwd: new URL('.', ROOT).pathname,
    });
    compose = parse(stdout);
  });

  const instances = () => Object.keys(compose.services).filter((s) => /^s3dedup/.test(s));

  it('has PostgreSQL, an S3 server, two s3dedup instances built here and a load balancer', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['postgres', 's3', 'lb']));
    expect(instances()).toHaveLength(2);
    for (const name of instances()) expect(compose.services[name]?.build, name).toBeDefined();
    expect(compose.services.lb?.ports?.[0]?.target).toBe(80);
  });

  it('gives each instance a configuration the server accepts, on the shared database, locks and bucket', () => {
    const configs = instances().map((name) => {
      const env = compose.services[name]?.environment ?? {};
      expect(Object.keys(env).filter((k) => !(VARIABLE_NAMES as string[]).includes(k))).toEqual([]);
      return loadConfig({ env });
    });
    const [a, b] = configs;
    expect(a?.KVSTORAGE_TYPE).toBe('postgres');
    expect(a?.LOCKS_TYPE).toBe('postgres');
    expect(a?.STORAGE_TYPE).toBe('s3');
    for (const key of ['DATABASE_URL', 'S3_ENDPOINT', 'BUCKET_NAME', 'LOCKS_TYPE'] as const) {
      expect(b?.[key], key).toBe(a?.[key]);
    }
    // The credentials are the ones the database and the S3 server are started with.
    const db = new URL(a?.DATABASE_URL ?? '');
    const pg = compose.services.postgres?.environment ?? {};
    expect([db.hostname, db.username, db.password, db.pathname]).toEqual([
      'postgres',
      pg.POSTGRES_USER,
      pg.POSTGRES_PASSWORD,
      `/${pg.POSTGRES_DB}`,
    ]);
    const s3 = compose.services.s3?.environment ?? {};
    expect([a?.S3_ACCESS_KEY, a?.S3_SECRET_KEY]).toEqual([
      s3.MINIO_ROOT_USER,
      s3.MINIO_ROOT_PASSWORD,
    ]);
    expect(new URL(a?.S3_ENDPOINT ?? '').hostname).toBe('s3');
    // Each instance spills uploads (TEMP_DIR, set by the image) to a volume of its own.
    const tmp = instances().map((name) => {
      const [volume = '', target = ''] = compose.services[name]?.volumes?.[0]?.split(':') ?? [];
      const config = loadConfig({ env: { ...imageEnv(), ...compose.services[name]?.environment } });
      expect(config.TEMP_DIR.startsWith(`${target}/`), name).toBe(true);
      return volume;
    });
    expect(new Set(tmp).size).toBe(2);
  });

  it('puts both instances behind nginx at the port they listen on', () => {
    const nginx = read('deploy/nginx.conf');
    const mount = compose.services.lb?.volumes?.find((v) => v.includes('deploy/nginx.conf:'));
    expect(mount?.split(':')[1]).toBe('/etc/nginx/conf.d/default.conf');
    for (const name of instances()) {
      const port = loadConfig({ env: compose.services[name]?.environment ?? {} }).LISTEN_PORT;
      expect(nginx).toMatch(new RegExp(`server ${name}:${port}\\b`));
    }
    // Bodies stream through, of any size (MAX_UPLOAD_SIZE is the server's limit).
    expect(nginx).toMatch(/client_max_body_size 0;/);
    expect(nginx).toMatch(/proxy_request_buffering off;/);
  });

  it('gives nginx a configuration it accepts', async () => {
    // Debian's nginx (1.22) checks it, with the instances' names (resolved by
    // Docker's DNS, through `resolve`, which the image's nginx 1.27 has) put
    // to a local address.
    const dir = mkdtempSync(join(tmpdir(), 'nginx-conf-'));
    try {
      const site = read('deploy/nginx.conf')
        .replace(/^resolver .*$/m, '')
        .replace(/s3dedup-\d+:(\d+) resolve/g, '127.0.0.1:$1');
      writeFileSync(join(dir, 'site.conf'), site);
      writeFileSync(
        join(dir, 'nginx.conf'),
        `error_log ${dir}/error.log;\npid ${dir}/nginx.pid;\nevents {}\nhttp { include ${dir}/site.conf; }\n`,
      );
      const { stderr } = await run('nginx', ['-t', '-c', join(dir, 'nginx.conf'), '-p', dir]);
      expect(stderr).toMatch(/test is successful/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
