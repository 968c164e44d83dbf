import type { Table, Target } from './report';

export interface BenchContext {
  /** Shorter phases (BENCH_QUICK=1): for trying the harness, not for publishing figures. */
  quick: boolean;
}

export interface BenchOutput {
  tables: Table[];
  targets: Target[];
  findings: string[];
  raw: unknown;
}

export interface BenchDefinition {
  name: string;
  title: string;
  method: string;
  run: (ctx: BenchContext) => Promise<BenchOutput>;
}
