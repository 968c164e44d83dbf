/**
 * A fixed-duration load run with autocannon's programmatic API, recording every
 * response time itself (autocannon's summary has no p95) and the CPU used by the
 * server's process group, this process, and the whole machine.
 */
import autocannon from 'autocannon';
import { type CpuSample, busyFraction, cpuSample, stealFraction } from './machine-load';
import { cpuDelta, groupCpu, selfCpuMs } from './workerd';
import { percentile } from './stats';
import { timedProgress } from './report';

export interface LoadOptions {
  url: string;
  path: string;
  durationS: number;
  connections: number;
  /** Body for the next request. */
  nextBody: () => string;
  /** Headers for a body (signed at send time). */
  headersFor: (body: string) => Record<string, string>;
  /** Process group of the server, for CPU accounting (null: skip). */
  pgrp: number | null;
  label: string;
  /** Count responses whose body contains this string (e.g. '"duplicate"'). */
  expectBody?: string;
}

export interface LoadFigures {
  requests: number;
  reqPerSec: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  expectedBodies: number | null;
  statusCounts: Record<string, number>;
  /** CPU ms used during the run, per process kind of the server group, plus this process. */
  cpuMs: Record<string, number>;
  /** Whole machine busy fraction during the run (all cores, other users included). */
  machineBusy: number;
  /** Share of CPU time stolen by the hypervisor during the run (contention from other guests). */
  steal: number;
  elapsedMs: number;
  /** Every response time (ms), for pooling phases. */
  latencies: number[];
}

export async function runLoad(o: LoadOptions): Promise<LoadFigures> {
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  let expected = 0;
  const cpuBefore = o.pgrp === null ? {} : groupCpu(o.pgrp);
  const selfBefore = selfCpuMs();
  const machineBefore: CpuSample = cpuSample();
  const started = Date.now();
  const stop = timedProgress(o.label, o.durationS * 1000, () => `${latencies.length} responses`);
  const result = await new Promise<autocannon.Result>((resolvePromise, reject) => {
    const instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        pipelining: 1,
        duration: o.durationS,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path: o.path,
            setupRequest: (req) => {
              const body = o.nextBody();
              return { ...req, method: 'POST', path: o.path, headers: o.headersFor(body), body };
            },
            ...(o.expectBody === undefined
              ? {}
              : {
                  onResponse: (_status: number, body: string) => {
                    if (body.includes(o.expectBody as string)) expected++;
                  },
                }),
          },
        ],
      },
      (err: unknown, res: autocannon.Result) => (err ? reject(err) : resolvePromise(res)),
    );
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      latencies.push(responseTime);
      statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
    });
  });
  stop();
  const elapsedMs = Date.now() - started;
  const machineAfter = cpuSample();
  const cpuMs = o.pgrp === null ? {} : cpuDelta(cpuBefore, groupCpu(o.pgrp));
  cpuMs['load generator + sink (bench process)'] = selfCpuMs() - selfBefore;
  const non2xx = Object.entries(statusCounts)
    .filter(([s]) => !s.startsWith('2'))
    .reduce((a, [, n]) => a + n, 0);
  return {
    requests: latencies.length,
    reqPerSec: latencies.length / (result.duration > 0 ? result.duration : o.durationS),
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: Math.max(...latencies),
    non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    expectedBodies: o.expectBody === undefined ? null : expected,
    statusCounts,
    cpuMs,
    machineBusy: busyFraction(machineBefore, machineAfter),
    steal: stealFraction(machineBefore, machineAfter),
    elapsedMs,
    latencies,
  };
}
