/**
 * Fencing across both levels of `host+cluster` as one bigint: the fleet term
 * (the leading ballot's czxid) in the high bits, the host lock's generation in
 * the low 32. A later fleet term is greater whatever the generations; within
 * one term (a worker crashed, a sibling took the host lock) the generation
 * grows. 'cluster' has generation 0; 'host' is the generation alone.
 */
export function fleetFence(term: number | bigint | string, generation = 0): bigint {
  // A generation of 2^32 or more (four billion takeovers on one host) would reach into the term's bits.
  return (BigInt(term) << 32n) + BigInt(Math.min(generation, 2 ** 32 - 1));
}

const GENERATION = (1n << 32n) - 1n;

/**
 * Whether the term fenced `next` came right after the one fenced `previous`,
 * with no other term between: the same fleet term (or none, 'host'), and
 * either the host lock's next generation (each holder writes one more) or,
 * with no host lock ('cluster'), the same ballot leading again. A term that
 * follows another one elsewhere (another holder of the lock, another
 * ballot) does not: what ran between is unknown.
 */
export function followsDirectly(previous: bigint, next: bigint): boolean {
  if (previous >> 32n !== next >> 32n) return false;
  const before = previous & GENERATION;
  const after = next & GENERATION;
  return after === before + 1n || (before === 0n && after === 0n);
}

/** A term that ended: its fence, and when (performance.now()). */
export interface EndedTerm {
  fence: bigint;
  at: number;
}

/** ms from `ended` to now when the term fenced `fence` follows it directly (nobody ran between); else undefined. */
export function gapSince(ended: EndedTerm | undefined, fence: bigint): number | undefined {
  return ended && followsDirectly(ended.fence, fence) ? performance.now() - ended.at : undefined;
}
