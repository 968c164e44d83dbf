/**
 * Fresh send slots for `max_per_second` deliveries that missed theirs.
 *
 * A batch takes its send slots from the registry before delivering, and each
 * rate-limited request waits for its slot. When the consumer's isolate is busy
 * as the slot comes, the request wakes up late; sent then, it would crowd the
 * slots given out after it (to this batch or another). It takes a fresh slot
 * instead: the registry hands slots out in order, so a fresh one comes after
 * every slot already given, and a request sent at it keeps the destination
 * within its limit. Requests that missed their slots at about the same moment
 * (a busy isolate wakes many timers at once) share one registry call, and a
 * batch makes at most `calls` of them: the consumer reserves them in its
 * service-call budget. Without a fresh slot (none left, none within the
 * horizon, the registry unavailable) the request is deferred as before.
 */
import { registryStub } from '../destinations/registry';
import { errorName, log } from '../log';

/** How long the first late request waits for others to join its registry call. */
const COLLECT_MS = 5;

export class SlotRefill {
  private waiting = new Map<string, { perSecond: number; resolvers: Array<(slot: number | null) => void> }>();
  private pending: ReturnType<typeof setTimeout> | null = null;
  private callsLeft: number;

  constructor(
    private readonly env: Env,
    calls: number,
    private readonly horizonMs: number,
  ) {
    this.callsLeft = calls;
  }

  /** A fresh slot (ms since epoch) for one request to `name`, or null when there is none to give. */
  take(name: string, perSecond: number): Promise<number | null> {
    if (this.pending === null && this.callsLeft <= 0) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w = this.waiting.get(name) ?? { perSecond, resolvers: [] };
      w.resolvers.push(resolve);
      this.waiting.set(name, w);
      this.pending ??= setTimeout(() => void this.ask(), COLLECT_MS);
    });
  }

  private async ask(): Promise<void> {
    const waiting = this.waiting;
    this.waiting = new Map();
    this.pending = null;
    this.callsLeft -= 1;
    const requests = Object.fromEntries([...waiting].map(([name, w]) => [name, { count: w.resolvers.length, perSecond: w.perSecond }]));
    let answer: Record<string, { slotsInMs: number[] }>;
    try {
      answer = await registryStub(this.env).reserve(requests, this.horizonMs);
    } catch (err) {
      log('warn', 'rate_slots_unavailable', { error: errorName(err) });
      for (const w of waiting.values()) for (const resolve of w.resolvers) resolve(null);
      return;
    }
    // Offsets from the registry's "now": counted from when the answer arrived here.
    const at = Date.now();
    for (const [name, w] of waiting) {
      const slots = answer[name]?.slotsInMs ?? [];
      w.resolvers.forEach((resolve, i) => {
        const offset = slots[i];
        resolve(offset === undefined ? null : at + offset);
      });
    }
    log('info', 'rate_slots_retaken', { destinations: Object.keys(requests), count: Object.values(requests).reduce((n, r) => n + r.count, 0) });
  }
}
