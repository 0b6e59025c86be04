import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';

/** What the figures were measured on, printed with them. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  ramGiB: number;
  os: string;
  kernel: string;
  node: string;
  ceph: string;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split('\n')[0] as string;
  } catch {
    return 'unknown';
  }
}

export function describeMachine(): MachineInfo {
  let os = 'unknown';
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {}
  const cpuList = cpus();
  return {
    cpu: cpuList[0]?.model.trim() ?? 'unknown',
    cores: cpuList.length,
    ramGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os,
    kernel: release(),
    node: process.version,
    ceph: firstLine('radosgw', ['--version'])
      .replace(/ \([0-9a-f]{40}\)/, '')
      .replace(/^ceph version/, 'Ceph'),
  };
}

export function machineLines(m: MachineInfo): string[] {
  return [
    `CPU: ${m.cpu}, ${m.cores} cores`,
    `RAM: ${m.ramGiB} GiB`,
    `OS: ${m.os}, kernel ${m.kernel}`,
    `Node.js: ${m.node}`,
    `S3 server: ${m.ceph} radosgw (one monitor, one memstore OSD), on the same machine`,
  ];
}

/** Kernel clock ticks per second, the unit of CPU times in /proc. */
const TICKS_PER_SECOND = (() => {
  const ticks = Number(firstLine('getconf', ['CLK_TCK']));
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
})();

/** CPU seconds a process has used so far (user + system), or NaN once it is gone. */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5), utime and stime; index 0 here is field 3.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores) so far. */
function machineSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
    line.trim().split(/\s+/).slice(1).map(Number);
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { busy: (total - idle - iowait) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
}

/** Cores each watched process kept busy during a phase (1.0 = one core all the time). */
export type CpuUse = Record<string, number>;

/**
 * Measures how many cores each process used between start() and stop(), to
 * show what bounds a figure: a phase where client, server and radosgw add up
 * to all the cores is CPU-bound on this machine, not limited by the code's
 * design. `client` is this benchmark process (it also runs the counting proxy).
 */
/** CPU seconds of a process, or of several together (the instances of one role). */
function cpuSecondsOfAll(pids: number | number[]): number {
  return (Array.isArray(pids) ? pids : [pids]).reduce((sum, pid) => sum + cpuSecondsOf(pid), 0);
}

export function cpuMeter(pids: Record<string, number | number[]>): {
  stop(): { use: CpuUse; seconds: number };
} {
  const t0 = performance.now();
  const self0 = process.cpuUsage();
  const m0 = machineSeconds();
  const before = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOfAll(pid)]),
  );
  return {
    stop() {
      const seconds = (performance.now() - t0) / 1000;
      const self = process.cpuUsage(self0);
      const m1 = machineSeconds();
      const use: CpuUse = { client: (self.user + self.system) / 1e6 / seconds };
      for (const [name, pid] of Object.entries(pids)) {
        use[name] = (cpuSecondsOfAll(pid) - (before[name] ?? Number.NaN)) / seconds;
      }
      // Share of all cores busy, in cores, to compare with the sum of the above.
      use.machine = ((m1.busy - m0.busy) / (m1.total - m0.total)) * cpus().length;
      return { use, seconds };
    },
  };
}
