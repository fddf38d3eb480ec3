import type { Singleton } from '../singleton/singleton.js';
import type { ZkSession } from '../zk/session.js';

/**
 * What this process has counted, whatever boards come and go in it: a
 * worker may have two boards (two apps), or a board made after its
 * singletons started. Counts are taken from the singletons and sessions
 * themselves, and the primary is told each increase once.
 */

export interface SingletonCounts {
  elected: number;
  runs: number;
  failures: number;
}

const toldOfSingleton = new WeakMap<Singleton, SingletonCounts>();
const toldOfSession = new WeakMap<ZkSession, number>();

/** What the singleton counted since the primary was last told (undefined: nothing), marked as told. */
export function untoldOfSingleton(job: Singleton): SingletonCounts | undefined {
  const told = toldOfSingleton.get(job) ?? { elected: 0, runs: 0, failures: 0 };
  const now = { elected: job.elections, runs: job.runs, failures: job.runFailures };
  toldOfSingleton.set(job, now);
  const delta = { elected: now.elected - told.elected, runs: now.runs - told.runs, failures: now.failures - told.failures };
  return delta.elected || delta.runs || delta.failures ? delta : undefined;
}

/** Expiries since the primary was last told, marked as told. */
export function untoldOfSession(zk: ZkSession): number {
  const now = zk.expiries;
  const delta = now - (toldOfSession.get(zk) ?? 0);
  toldOfSession.set(zk, now);
  return delta;
}

/**
 * One board shows a singleton's or a session's gauges: the primary sums
 * same-label series, so two boards of one worker showing the same would
 * read 2. The first to claim it shows it, until it releases it.
 */
const shownBy = new WeakMap<Singleton | ZkSession, object>();

export function claim(thing: Singleton | ZkSession, board: object): boolean {
  const owner = shownBy.get(thing);
  if (owner === undefined) shownBy.set(thing, board);
  return owner === undefined || owner === board;
}

export function release(thing: Singleton | ZkSession, board: object): void {
  if (shownBy.get(thing) === board) shownBy.delete(thing);
}
