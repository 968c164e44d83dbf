/** The machine a benchmark ran on, recorded with every result. */
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { resolve } from 'node:path';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
  wrangler: string;
  workerd: string;
  miniflare: string;
  autocannon: string;
  date: string;
}

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);

function pkgVersion(name: string): string {
  try {
    const json = JSON.parse(readFileSync(resolve(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
    return json.version ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpuModel: (list[0]?.model ?? 'unknown').trim(),
    cores: list.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    wrangler: pkgVersion('wrangler'),
    workerd: pkgVersion('workerd'),
    miniflare: pkgVersion('miniflare'),
    autocannon: pkgVersion('autocannon'),
    date: new Date().toISOString(),
  };
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpuModel} × ${m.cores} cores, ${m.memoryGiB} GiB · Node ${m.node} · wrangler ${m.wrangler} · workerd ${m.workerd} · ${m.date.slice(0, 16).replace('T', ' ')} UTC`;
}
