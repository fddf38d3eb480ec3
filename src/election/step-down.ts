/**
 * When a leader steps down after the server has been silent: the default is
 * half the negotiated session timeout. Idle pings come every third of the
 * timeout, so silence that long is normal: a deadline at or below it would
 * step down with no fault at all. And it must stay below the timeout, or
 * another candidate could lead first. A given value outside (timeout/3,
 * 0.9 × timeout) is moved to the nearest sound one (`used`), within
 * [`low`, `high`].
 */
export function stepDownDeadline(timeout: number, given: number | undefined): { used: number; low: number; high: number } {
  const low = Math.ceil(timeout / 3) + Math.max(10, Math.floor(timeout / 20));
  const high = Math.floor(timeout * 0.9);
  const used = given === undefined ? Math.floor(timeout / 2) : Math.min(Math.max(given, low), high);
  return { used, low, high };
}
