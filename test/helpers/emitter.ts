import { after, before } from 'node:test';
import type { Singleton, SingletonEvents, ZkSession, ZkSessionEvents } from 'bellwether';

/** The payload of the next `event` a singleton emits. */
export function next<E extends keyof SingletonEvents>(job: Singleton, event: E): Promise<Parameters<SingletonEvents[E]>[0]> {
  return new Promise((resolve) => {
    (job.once as (event: E, fn: (arg: Parameters<SingletonEvents[E]>[0]) => void) => unknown)(event, resolve);
  });
}

/** Keeps the test process's event loop alive for the tests of this file. */
export function keepLoopAlive(): void {
  let timer: NodeJS.Timeout | undefined;
  before(() => {
    timer = setInterval(() => {}, 60_000);
  });
  after(() => clearInterval(timer));
}

/** The payload of the next `event` a ZkSession emits. */
export function nextZk<E extends keyof ZkSessionEvents>(zk: ZkSession, event: E): Promise<Parameters<ZkSessionEvents[E]>[0]> {
  return new Promise((resolve) => {
    (zk.once as (event: E, fn: (arg: Parameters<ZkSessionEvents[E]>[0]) => void) => unknown)(event, resolve);
  });
}
