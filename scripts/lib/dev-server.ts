/**
 * Starts the router as a user meets it: a real `wrangler dev` process on
 * loopback, with its own state directory, and stops it (and its children)
 * completely. Shared by the end-to-end tests, `npm run demo` and the benchmarks.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface RouterProcess {
  url: string;
  port: number;
  /** wrangler's DevTools inspector (CPU profiles of the Worker's isolate: bench/profile.ts). */
  inspectorPort: number;
  /** Everything wrangler printed (stdout and stderr). */
  output: () => string;
  stop: () => Promise<void>;
}

export interface StartOptions {
  /** `--var NAME:value` pairs (ROUTER may be an object: it is JSON-encoded). */
  vars?: Record<string, unknown>;
  /** wrangler config file (default: the project's wrangler.toml). */
  config?: string;
  /** Extra wrangler arguments, e.g. ['--test-scheduled']. */
  args?: string[];
  /** Max wait for readiness. */
  timeoutMs?: number;
  /** Print wrangler's output as it comes. */
  echo?: boolean;
}

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

export async function startRouter(opts: StartOptions = {}): Promise<RouterProcess> {
  const port = await freePort();
  const inspector = await freePort();
  const state = mkdtempSync(join(tmpdir(), 'workos-router-'));
  const args = [
    resolve(ROOT, 'node_modules/wrangler/bin/wrangler.js'),
    'dev',
    '--config',
    opts.config ?? resolve(ROOT, 'wrangler.toml'),
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--inspector-port',
    String(inspector),
    '--persist-to',
    state,
    '--show-interactive-dev-session=false',
    ...(opts.args ?? []),
  ];
  // Vars (secrets among them) go through a private env file, not the command
  // line, where any local user could read them with `ps`.
  const vars = Object.entries(opts.vars ?? {});
  if (vars.length > 0) {
    const envFile = join(state, 'vars.env');
    const lines = vars.map(([name, value]) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      if (/[\r\n]/.test(text)) throw new Error(`startRouter: var ${name} must be a single line`);
      return `${name}=${text.includes("'") ? JSON.stringify(text) : `'${text}'`}`;
    });
    writeFileSync(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    args.push('--env-file', envFile);
  }
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0', CI: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    const s = chunk.toString();
    output += s;
    if (opts.echo) process.stderr.write(s);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${port}`;
  const stop = () => stopProcess(child, state);
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`wrangler dev exited with ${child.exitCode}:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) return { url, port, inspectorPort: inspector, output: () => output, stop };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`wrangler dev did not become ready within ${opts.timeoutMs ?? 90_000} ms:\n${output}`);
}

async function stopProcess(child: ChildProcess, state: string): Promise<void> {
  if (child.exitCode === null && child.pid !== undefined) {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid, 'SIGTERM'); // the whole group: wrangler and workerd
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
    // wrangler may exit before its workerd children: wait until the group is gone.
    const deadline = Date.now() + 10_000;
    while (groupAlive(child.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (groupAlive(child.pid)) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  rmSync(state, { recursive: true, force: true });
}

/** Is any process of this process group still alive? */
export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}
