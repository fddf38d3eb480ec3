/**
 * The session's delivery queue: every event and user callback runs here, one
 * at a time and in order. `pause()` holds delivery (nothing is dropped, as
 * around a fork); `resume()` delivers what was held. A callback that throws
 * or rejects is reported and the queue goes on.
 */
export class EventQueue {
  readonly #items: (() => unknown)[] = [];
  readonly #onError: (error: unknown) => void;
  #paused = 0;
  #draining = false;
  #idle: (() => void)[] = [];

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  push(callback: () => unknown): void {
    this.#items.push(callback);
    void this.#drain();
  }

  /** Nested pauses need as many resumes. */
  pause(): void {
    this.#paused += 1;
  }

  resume(): void {
    if (this.#paused > 0) this.#paused -= 1;
    void this.#drain();
  }

  get paused(): boolean {
    return this.#paused > 0;
  }

  /** Resolves once everything queued so far has run (or at once while paused and empty). */
  idle(): Promise<void> {
    if (!this.#draining && (this.#items.length === 0 || this.paused)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.paused && this.#items.length > 0) {
        const callback = this.#items.shift()!;
        try {
          await callback();
        } catch (err) {
          try {
            this.#onError(err);
          } catch {
            // An error listener that throws must not stop delivery.
          }
        }
      }
    } finally {
      this.#draining = false;
      const waiters = this.#idle;
      this.#idle = [];
      for (const resolve of waiters) resolve();
    }
  }
}
