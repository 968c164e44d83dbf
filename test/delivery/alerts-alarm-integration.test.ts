/**
 * The alerts notifier's alarm is shared by every alert it waits to send
 * (throttled by `min_interval_seconds`). A run that hands an alert over
 * awaits the Slack outbox; a signal that arrives meanwhile may need the alarm
 * sooner than the run's own next time. The run must then leave the sooner
 * alarm in place (it used to overwrite it with its own, later one, delaying
 * that alert). The outbox is real; its hand-over is only held at a gate.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { alertsStub } from '../../src/alerts/notifier';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

describe('the alerts alarm', () => {
  it('a sooner alarm set while a run awaited its hand-over is kept: the run does not push it back to its own later time', async () => {
    const notifier = alertsStub(env);
    await notifier.remember();
    const alarm = () => runInDurableObject(notifier, (_i, state) => state.storage.getAlarm());
    const now = Date.now();
    // `c` was just sent: its next message may go in min_interval_seconds (30 s in this project's ROUTER).
    await runInDurableObject(notifier, (_i, state) => {
      state.storage.sql.exec(
        "INSERT INTO alerts (kind, subject, pending, details, first_at, last_sent_at, outage_open) VALUES ('dead_letter', 'c', 1, '[]', ?, ?, 1)",
        now,
        now,
      );
    });
    // The hand-over to the Slack outbox waits at a gate.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let submits = 0;
    await runInDurableObject(notifier, (instance) => {
      const ns = (instance as unknown as { env: Env }).env.SLACK_OUTBOX;
      const realGet = ns.get.bind(ns);
      vi.spyOn(ns, 'get').mockImplementation((id) => {
        const real = realGet(id) as unknown as { submit: (...args: unknown[]) => Promise<unknown> };
        return {
          submit: async (...args: unknown[]) => {
            submits++;
            await gate;
            return real.submit(...args);
          },
        } as never;
      });
    });
    // `a` is due now: this run hands it over (and waits at the gate); its own next time is c's, 30 s away.
    const first = notifier.notify([{ kind: 'dead_letter', destination: 'a', count: 1 }]);
    await until(async () => submits === 1, "a's hand-over on its way");
    // Meanwhile `b`, sent 25 s ago, has something new: due in about 5 s, so the alarm is set for then.
    await runInDurableObject(notifier, (_i, state) => {
      state.storage.sql.exec("INSERT INTO alerts (kind, subject, pending, details, last_sent_at, outage_open) VALUES ('dead_letter', 'b', 0, '[]', ?, 0)", Date.now() - 25_000);
    });
    await notifier.notify([{ kind: 'dead_letter', destination: 'b', count: 1 }]);
    const soon = (await alarm()) as number;
    expect(soon - Date.now()).toBeLessThan(6_000);
    // The first run ends: b's alarm stays.
    release();
    await first;
    expect(submits).toBe(1);
    expect(await alarm()).toBe(soon);
  });
});
