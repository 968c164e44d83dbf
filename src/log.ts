/**
 * Structured JSON logs, one line per record. Callers pass only identifiers,
 * counts and outcomes: never secrets, signatures or payload contents.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };
let minRank = RANK.info;
/** Whether a level was applied in this isolate yet (see `setLogLevelIfUnapplied`). */
let applied = false;

/**
 * The least severe level written (ROUTER `log_level`, applied by every
 * `loadConfig`): `warn` drops the per-event `info` lines (accepted,
 * delivered, …), which is most of the lines and of their CPU.
 */
export function setLogLevel(level: LogLevel): void {
  minRank = RANK[level];
  applied = true;
}

/**
 * Applies `level` only if no level was applied in this isolate yet: a Durable
 * Object whose isolate has not loaded the config (its first log line may come
 * before any `loadConfig`) takes the configured level, and never overrides one
 * a request in the same isolate applied (tests run Workers of several configs
 * in one isolate).
 */
export function setLogLevelIfUnapplied(level: LogLevel): void {
  if (!applied) setLogLevel(level);
}

/** Tests only: back to the state of a fresh isolate. */
export function resetLogLevelForTests(): void {
  minRank = RANK.info;
  applied = false;
}

export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (RANK[level] < minRank) return;
  const line = JSON.stringify({ level, msg, ...fields });
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
}

/**
 * The audit trail: what an operator did (paused, resumed, replayed, deleted,
 * discarded, viewed a payload, signed in). Always written, whatever
 * `log_level` says: operator actions are rare, and a cost setting must not
 * erase the record of them. Identifiers and counts only, like every line.
 */
export function audit(msg: string, fields: Record<string, unknown> = {}, level: 'info' | 'warn' = 'info'): void {
  const line = JSON.stringify({ level, msg, audit: true, ...fields });
  if (level === 'warn') console.warn(line);
  else console.log(line);
}

const onceKeys = new Set<string>();
const ONCE_LIMIT = 1000;

/** Logs a record at most once per isolate for `key`. */
export function logOnce(key: string, level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (onceKeys.has(key)) return;
  if (onceKeys.size >= ONCE_LIMIT) onceKeys.clear();
  onceKeys.add(key);
  log(level, msg, fields);
}

/** A short, loggable description of a caught value: its class and message, never a stack. */
export function errorName(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 200) : 'unknown error';
}
