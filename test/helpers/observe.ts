/** Reading what the Worker did: its structured log lines and the dead-letter store. */
import { env } from 'cloudflare:workers';
import { type MockInstance, vi } from 'vitest';
import { type DeadLetterSummary, deadLetterStub } from '../../src/deadletters/store';

export type LogRecord = Record<string, unknown> & { msg: string };

/** Spies (without replacing) console.log/warn/error and parses the router's JSON lines. */
export function watchLogs(): { records(): LogRecord[]; about(eventId: string, msg?: string): LogRecord[] } {
  const spies: MockInstance[] = [vi.spyOn(console, 'log'), vi.spyOn(console, 'warn'), vi.spyOn(console, 'error')];
  const records = (): LogRecord[] =>
    spies.flatMap((s) =>
      s.mock.calls.flatMap((call) => {
        const line = call[0];
        if (typeof line !== 'string' || !line.startsWith('{')) return [];
        try {
          return [JSON.parse(line) as LogRecord];
        } catch {
          return [];
        }
      }),
    );
  return {
    records,
    about: (eventId, msg) => records().filter((r) => r.event_id === eventId && (msg === undefined || r.msg === msg)),
  };
}

/** Every dead letter recorded for one event id. */
export async function deadLettersFor(eventId: string): Promise<DeadLetterSummary[]> {
  const found: DeadLetterSummary[] = [];
  let after = 0;
  for (;;) {
    const page = await deadLetterStub(env).list(500, after);
    found.push(...page.filter((d) => d.event_id === eventId));
    if (page.length < 500) return found;
    after = page[page.length - 1]?.seq ?? after;
  }
}
