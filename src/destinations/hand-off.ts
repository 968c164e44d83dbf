/**
 * Collects what one consumer invocation hands to per-destination Durable
 * Objects (Slack outboxes, held deliveries) while its deliveries start, then
 * sends each destination's items in one request (`flush`): one subrequest per
 * destination per batch, not one per event. Items handed over after the flush
 * go out on their own.
 */
export class HandOffBatch<Item, Result> {
  private readonly queued = new Map<string, { items: Item[]; waiters: { resolve: (r: Result) => void; reject: (err: unknown) => void }[] }>();
  private flushed = false;

  /** `send(destination, items)` answers one result per item, in order. */
  constructor(private readonly send: (destination: string, items: Item[]) => Promise<Result[]>) {}

  submit(destination: string, item: Item): Promise<Result> {
    if (this.flushed) return this.send(destination, [item]).then((r) => r[0] as Result);
    return new Promise<Result>((resolve, reject) => {
      const slot = this.queued.get(destination) ?? { items: [], waiters: [] };
      slot.items.push(item);
      slot.waiters.push({ resolve, reject });
      this.queued.set(destination, slot);
    });
  }

  async flush(): Promise<void> {
    this.flushed = true;
    await Promise.all(
      [...this.queued.entries()].map(async ([destination, { items, waiters }]) => {
        try {
          const results = await this.send(destination, items);
          waiters.forEach((w, i) => w.resolve(results[i] as Result));
        } catch (err) {
          for (const w of waiters) w.reject(err);
        }
      }),
    );
  }
}
