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
