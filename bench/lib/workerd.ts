/**
 * Helpers for the benchmarks that run code in local workerd through
 * `wrangler dev` (scripts/lib/dev-server.ts): copies of the project's
 * wrangler.toml with bench-only changes, and CPU accounting of the wrangler
 * process group (wrangler's Node process and workerd) from /proc.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'smol-toml';
import { ROOT } from './machine';

export interface GeneratedConfig {
  path: string;
  cleanup: () => void;
}

/**
 * Writes a copy of the project's wrangler.toml to a temporary directory with
 * `main` made absolute (optionally replaced) and `edit` applied. The project's
 * own wrangler.toml is never modified.
 */
export function copyWranglerConfig(opts: { main?: string; edit?: (toml: Record<string, unknown>) => void } = {}): GeneratedConfig {
  const toml = parse(readFileSync(resolve(ROOT, 'wrangler.toml'), 'utf8')) as Record<string, unknown>;
  toml.main = resolve(ROOT, opts.main ?? String(toml.main));
  opts.edit?.(toml);
  const dir = mkdtempSync(join(tmpdir(), 'router-bench-config-'));
  const path = join(dir, 'wrangler.toml');
  writeFileSync(path, stringify(toml));
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The [[queues.consumers]] entry of the router's own queue in a parsed wrangler.toml. */
export function mainConsumer(toml: Record<string, unknown>): Record<string, unknown> {
  const queues = toml.queues as { consumers?: Record<string, unknown>[] } | undefined;
  const c = queues?.consumers?.find((x) => x.queue === 'workos-router-events');
  if (c === undefined) throw new Error('wrangler.toml: no [[queues.consumers]] for workos-router-events');
  return c;
}

const CLK_TCK = 100;

interface ProcInfo {
  pid: number;
  comm: string;
  pgrp: number;
  cpuMs: number;
}

function readProc(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is state (field 3); utime is field 14, stime 15; pgrp is field 5.
    const pgrp = Number(fields[2]);
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return { pid, comm, pgrp, cpuMs: ((utime + stime) * 1000) / CLK_TCK };
  } catch {
    return null;
  }
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** The process group of the `wrangler dev` started on `port` (startRouter starts it detached, so its pid leads the group). */
export function findWranglerGroup(port: number): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = cmdline(Number(entry));
    const i = args.indexOf('--port');
    if (i >= 0 && args[i + 1] === String(port) && args.some((a) => a.endsWith('wrangler.js'))) {
      return readProc(Number(entry))?.pgrp ?? null;
    }
  }
  return null;
}

/** CPU time (user + system, ms) used so far by each process of a group, summed by command name. */
export function groupCpu(pgrp: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = readProc(Number(entry));
    if (p === null || p.pgrp !== pgrp) continue;
    const name = p.comm.startsWith('workerd') ? 'workerd' : p.comm === 'node' || p.comm.startsWith('MainThread') ? 'wrangler (node)' : p.comm;
    out[name] = (out[name] ?? 0) + p.cpuMs;
  }
  return out;
}

/** CPU time used by this Node process so far (ms). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) out[k] = (after[k] ?? 0) - (before[k] ?? 0);
  return out;
}
