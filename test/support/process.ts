import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/**
 * The Node flags the CLI's shebang line declares (`#!/usr/bin/env -S node
 * --max-semi-space-size=2 ...`, see src/cli/main.ts). Starting `node CLI`
 * directly would drop them, and memory measured that way would not be the
 * memory users get.
 */
export function cliNodeFlags(cli = CLI): string[] {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '';
  const words = first.replace(/^#!\s*/, '').split(/\s+/);
  const node = words.findIndex((w) => w === 'node' || w.endsWith('/node'));
  return node < 0 ? [] : words.slice(node + 1).filter((w) => w !== '');
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Peak resident set size so far (VmHWM), in bytes. */
  peakRss(): number;
  /** Resident set size now (VmRSS), in bytes. */
  currentRss(): number;
  /** Everything the process printed. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the built CLI (`npm test` builds first) as a separate process, so
 * its memory and signals are its own; resolves once it logs that it listens.
 */
export async function startServerProcess(
  env: Record<string, string>,
  args = ['server'],
  nodeFlags = cliNodeFlags(),
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      LOG_JSON: 'true',
      LISTEN_ADDRESS: '127.0.0.1',
      LISTEN_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    // Longer than the server's own STARTUP_TIMEOUT (30 s by default), which it
    // may spend waiting for a database or for radosgw to create a bucket's
    // pools: a fresh bucket on a loaded machine once took more than the 20 s
    // this used to allow (three instances at once, in a CI run of stop 29).
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${out}`));
    }, 60_000);
    const onData = () => {
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === 'listening' && entry.url) {
          clearTimeout(timer);
          child.stdout?.off('data', onData);
          resolve(entry.url);
        }
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
  return {
    child,
    url,
    peakRss: () => procStatus(child.pid, 'VmHWM'),
    currentRss: () => procStatus(child.pid, 'VmRSS'),
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }),
  };
}

/** A "kB" field of /proc/PID/status, in bytes. */
function procStatus(pid: number | undefined, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1];
  if (!kb) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** What a command printed and how it ended (code null: a signal ended it). */
export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Standard output and error as they came, interleaved. */
  output: string;
}

/**
 * Runs a command to completion, with only PATH and `env` in its environment;
 * with `stdin`, that text on its standard input (a pipe, not a terminal),
 * otherwise none.
 */
export function runProcess(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const result: ProcessResult = { code: null, stdout: '', stderr: '', output: '' };
    child.stdout?.on('data', (d: Buffer) => {
      result.stdout += d.toString();
      result.output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      result.stderr += d.toString();
      result.output += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ ...result, code }));
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
  });
}

/** Runs the built CLI to completion (see runProcess). */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<ProcessResult> {
  return runProcess(CLI, args, { env, ...(stdin === undefined ? {} : { stdin }) });
}
