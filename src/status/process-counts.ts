import type { DemotionReason, Singleton } from '../singleton/singleton.js';
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
  stepDowns: Record<DemotionReason, number>;
}

export interface SessionCounts {
  expiries: number;
  suspensions: number;
}

export const DEMOTION_REASONS: readonly DemotionReason[] = ['closed', 'failed', 'lost'];

/** All at 0. */
export function noSingletonCounts(): SingletonCounts {
  return { elected: 0, runs: 0, failures: 0, stepDowns: { closed: 0, failed: 0, lost: 0 } };
}

const toldOfSingleton = new WeakMap<Singleton, SingletonCounts>();
const toldOfSession = new WeakMap<ZkSession, SessionCounts>();

/** What the singleton counted since the primary was last told (undefined: nothing), marked as told. */
export function untoldOfSingleton(job: Singleton): SingletonCounts | undefined {
  const told = toldOfSingleton.get(job) ?? noSingletonCounts();
  const now = { elected: job.elections, runs: job.runs, failures: job.runFailures, stepDowns: job.stepDowns };
  toldOfSingleton.set(job, now);
  const stepDowns = Object.fromEntries(DEMOTION_REASONS.map((reason) => [reason, now.stepDowns[reason] - told.stepDowns[reason]])) as SingletonCounts['stepDowns'];
  const delta = { elected: now.elected - told.elected, runs: now.runs - told.runs, failures: now.failures - told.failures, stepDowns };
  return delta.elected || delta.runs || delta.failures || DEMOTION_REASONS.some((reason) => stepDowns[reason]) ? delta : undefined;
}

/** Expiries and suspensions since the primary was last told (undefined: none), marked as told. */
export function untoldOfSession(zk: ZkSession): SessionCounts | undefined {
  const told = toldOfSession.get(zk) ?? { expiries: 0, suspensions: 0 };
  const now = { expiries: zk.expiries, suspensions: zk.suspensions };
  toldOfSession.set(zk, now);
  const delta = { expiries: now.expiries - told.expiries, suspensions: now.suspensions - told.suspensions };
  return delta.expiries || delta.suspensions ? delta : undefined;
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
