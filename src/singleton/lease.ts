/**
 * What a singleton stands on: something that grants exclusive leadership
 * (a host lock now, a fleet election later) and says when it was lost.
 */
export interface Lease {
  /** Fencing token: strictly greater than every earlier holder's. */
  readonly token: number;
  /** Fencing value across every level it stands on (see fence.ts): strictly greater than every earlier holder's. */
  readonly fence: bigint;
  /** Aborts when leadership is lost without `release()` having been called. */
  readonly lost: AbortSignal;
  /** Gives leadership up; the next contender may then take it. */
  release(): Promise<void>;
}

export interface LeaseSource {
  /** Checks everything that can be checked before contending; throws a BellwetherError. */
  prepare(): void;
  /** Resolves once leadership is granted; rejects with `signal.reason` if aborted first. */
  acquire(signal: AbortSignal): Promise<Lease>;
  /**
   * Leaves for good, once the singleton's loop has ended (closed, or its
   * worker stopping): a lease lost without release (a fleet ballot kept to
   * lead again) must not stay behind when no acquire() follows.
   */
  close?(): Promise<void>;
}
