/**
 * Benchmark results: the JSON written to bench/results/<name>.json, the
 * terminal tables printed while a benchmark runs, and BENCHMARKS.md, which is
 * regenerated from whatever results are on disk.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type MachineInfo, ROOT, machineLine } from './machine';

export type Cell = string | number;

export interface Table {
  title: string;
  columns: string[];
  rows: Cell[][];
  /** One paragraph printed under the table. */
  note?: string;
}

export interface Target {
  what: string;
  target: string;
  measured: string;
  /** null when the benchmark could not measure it. */
  met: boolean | null;
}

export interface BenchResult {
  name: string;
  title: string;
  /** What is measured and how, in a sentence or two. */
  method: string;
  machine: MachineInfo;
  durationMs: number;
  targets: Target[];
  tables: Table[];
  /** Findings: what bounds the figures, what misses a target and why. */
  findings: string[];
  raw: unknown;
}

export const RESULTS_DIR = resolve(ROOT, 'bench/results');
export const BENCHMARKS_MD = resolve(ROOT, 'BENCHMARKS.md');

// ---------------------------------------------------------------------------
// Terminal
// ---------------------------------------------------------------------------

export function printTable(t: Table): void {
  const cells = [t.columns, ...t.rows.map((r) => r.map(String))];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: Cell[]) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i] ?? 0) : String(c).padStart(widths[i] ?? 0))).join('  ');
  const out = [`\n  ${t.title}`, `  ${line(t.columns)}`, `  ${widths.map((w) => '─'.repeat(w)).join('  ')}`];
  for (const r of t.rows) out.push(`  ${line(r)}`);
  if (t.note) out.push(`  ${t.note}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export function printTargets(targets: Target[]): void {
  if (targets.length === 0) return;
  printTable({
    title: 'Targets',
    columns: ['', 'target', 'measured', 'met'],
    rows: targets.map((t) => [t.what, t.target, t.measured, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  });
}

/** A one-line progress indicator on stderr (redrawn in place on a TTY, every 25% otherwise). */
export class Progress {
  private lastPrinted = -1;
  private readonly started = Date.now();
  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  update(done: number, detail = ''): void {
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const elapsed = ((Date.now() - this.started) / 1000).toFixed(1);
    if (process.stderr.isTTY) {
      const width = 24;
      const filled = Math.round(frac * width);
      process.stderr.write(`\r  ${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${elapsed}s ${detail}\x1b[K`);
    } else {
      const quarter = Math.floor(frac * 4);
      if (quarter > this.lastPrinted) {
        this.lastPrinted = quarter;
        process.stderr.write(`  ${this.label}: ${(frac * 100).toFixed(0)}% (${elapsed}s) ${detail}\n`);
      }
    }
  }

  done(detail = ''): void {
    this.update(this.total, detail);
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}

/** Ticks a Progress over a fixed wall-clock duration until the returned stop() is called. */
export function timedProgress(label: string, durationMs: number, detail: () => string = () => ''): () => void {
  const p = new Progress(label, durationMs);
  const started = Date.now();
  const timer = setInterval(() => p.update(Date.now() - started, detail()), 500);
  return () => {
    clearInterval(timer);
    p.done(detail());
  };
}

export function step(message: string): void {
  process.stderr.write(`  · ${message}\n`);
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = resolve(RESULTS_DIR, `${result.name}.json`);
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function readResults(): Map<string, BenchResult> {
  const out = new Map<string, BenchResult>();
  if (!existsSync(RESULTS_DIR)) return out;
  for (const file of readdirSync(RESULTS_DIR)) {
    if (!file.endsWith('.json')) continue;
    try {
      const r = JSON.parse(readFileSync(resolve(RESULTS_DIR, file), 'utf8')) as BenchResult;
      if (typeof r.name === 'string') out.set(r.name, r);
    } catch {
      // a broken file is skipped; the next run rewrites it
    }
  }
  return out;
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

function mdTable(columns: string[], rows: Cell[][]): string {
  const head = `| ${columns.map(mdEscape).join(' | ')} |`;
  const sep = `| ${columns.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`;
  const body = rows.map((r) => `| ${r.map((c) => mdEscape(String(c))).join(' | ')} |`);
  return [head, sep, ...body].join('\n');
}

/** Regenerates BENCHMARKS.md from every result on disk, in `order`. */
export function writeBenchmarksMd(order: readonly { name: string; title: string }[]): void {
  const results = readResults();
  const parts: string[] = [];
  parts.push('# Benchmarks');
  parts.push('');
  parts.push(
    'Generated by `npm run bench` (`tsx bench/run.ts`) from the raw results in `bench/results/*.json`; do not edit by hand. ' +
      '`npm run bench -- <name>` re-runs one benchmark and regenerates this file, keeping the other sections as last measured.',
  );
  parts.push('');
  parts.push(
    'Every figure comes from one machine, which other processes may share: absolute numbers are noisy and machine-specific. ' +
      'Read the **ratios**: each one compares two figures measured in the same run, on the same machine, back to back. ' +
      'Local `wrangler dev` (workerd + miniflare) is not the Cloudflare network: the workerd figures say how the code paths compare, not what production will do.',
  );
  parts.push('');
  parts.push('| benchmark | what it measures | last run | targets met |');
  parts.push('| --- | --- | --- | --- |');
  for (const { name, title } of order) {
    const r = results.get(name);
    const met = r === undefined ? '' : `${r.targets.filter((t) => t.met === true).length}/${r.targets.length}`;
    parts.push(`| [\`${name}\`](#${name}) | ${title} | ${r === undefined ? 'not run yet' : r.machine.date.slice(0, 16).replace('T', ' ')} | ${met} |`);
  }
  // Hand-kept: how figures moved across changes (each run above only knows its own).
  const history = resolve(ROOT, 'bench/before-after.md');
  if (existsSync(history)) {
    parts.push('');
    parts.push(readFileSync(history, 'utf8').trim());
  }
  for (const { name, title } of order) {
    parts.push('');
    parts.push(`## ${name}`);
    parts.push('');
    const r = results.get(name);
    if (r === undefined) {
      parts.push(`*${title}*: not run yet (\`npm run bench -- ${name}\`).`);
      continue;
    }
    parts.push(`**${r.title}.** ${r.method}`);
    parts.push('');
    parts.push(`Machine: ${machineLine(r.machine)} · run took ${(r.durationMs / 1000).toFixed(0)} s · raw: [\`bench/results/${name}.json\`](bench/results/${name}.json)`);
    if (r.targets.length > 0) {
      parts.push('');
      parts.push(
        mdTable(
          ['target', 'wanted', 'measured', 'met'],
          r.targets.map((t) => [t.what, t.target, t.measured, t.met === null ? 'not measured' : t.met ? '✅ yes' : '❌ no']),
        ),
      );
    }
    for (const t of r.tables) {
      parts.push('');
      parts.push(`### ${t.title}`);
      parts.push('');
      parts.push(mdTable(t.columns, t.rows));
      if (t.note) {
        parts.push('');
        parts.push(t.note);
      }
    }
    if (r.findings.length > 0) {
      parts.push('');
      parts.push('**Findings**');
      parts.push('');
      for (const f of r.findings) parts.push(`- ${f}`);
    }
  }
  parts.push('');
  writeFileSync(BENCHMARKS_MD, parts.join('\n'));
}
