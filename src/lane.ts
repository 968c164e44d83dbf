/**
 * Async work run one piece at a time, in the order asked, inside one Durable
 * Object (whose requests and alarm otherwise interleave at every await). A
 * piece that fails does not stop the next; its caller gets the failure.
 */
export class Lane {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const mine = this.tail.then(fn, fn);
    this.tail = mine.catch(() => undefined);
    return mine;
  }
}
