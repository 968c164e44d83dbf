/**
 * Whole-machine CPU use between two /proc/stat samples: the busy fraction
 * (everything running here, other users of the machine included) and the
 * steal fraction (time the hypervisor gave our virtual CPUs to other guests:
 * contention from outside this machine, the main source of noise on a shared host).
 */
import { readFileSync } from 'node:fs';

export interface CpuSample {
  busy: number;
  steal: number;
  total: number;
}

export function cpuSample(): CpuSample {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, steal: v[7] ?? 0, total };
  } catch {
    return { busy: 0, steal: 0, total: 0 };
  }
}

export function busyFraction(a: CpuSample, b: CpuSample): number {
  const total = b.total - a.total;
  return total > 0 ? (b.busy - a.busy) / total : Number.NaN;
}

export function stealFraction(a: CpuSample, b: CpuSample): number {
  const total = b.total - a.total;
  return total > 0 ? (b.steal - a.steal) / total : Number.NaN;
}
