/**
 * A cluster under `bellwether start` for the drain tests, a bounded
 * keep-alive load (wrk) with a stop in the middle, and a rolling restart
 * under that load with no failed request.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { bounded } from './bounded.js';
import { CLI } from './cli.js';
import { Fixture, Fixtures } from './child.js';
import { freePort } from './http.js';
import { gone, killAtEnd } from './processes.js';
import type { Runtime } from './runtimes.js';
import { tempDir } from './temp.js';
import { failures, wrk } from './wrk.js';

export const EXAMPLES = new URL('../../../examples/', import.meta.url).pathname;
/**
 * The load: 20 connections, the stop 1.5 s in, and the load goes on until
 * 1.5 s after the stop has done its work (at most 8 s in all).
 */
const LOAD = { seconds: 8, connections: 20 };
const STOP_AFTER_MS = 1500;
const LOAD_AFTER_STOP_MS = 1500;

export interface Cluster {
  primary: Fixture;
  port: number;
  /** Worker pids by index, from `bellwether status --json`. */
  pids(): number[];
}

export async function startCluster(t: TestContext, runtime: Runtime, app: string, workers: number, env: Record<string, string> = {}, flags: string[] = [], wrap: string[] = []): Promise<Cluster> {
  const lockDir = tempDir(t);
  const port = await freePort();
  const name = `drain-${port}`;
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const primary = fixtures.add(
    new Fixture(wrap[0] ?? runtime.bin, [...wrap.slice(1), ...(wrap.length ? [runtime.bin] : []), CLI, 'start', app, '--workers', String(workers), '--heartbeat', '100', '--timeout', '3000', '--name', name, ...flags], `bellwether start ${name} (${runtime.name})`, {
      ...env,
      PORT: String(port),
      BELLWETHER_LOCK_DIR: lockDir,
    }),
  );
  await bounded('workers ready', primary.stderrMatches(new RegExp(`${workers} of ${workers} workers ready`)), 30_000);
  const pids = (): number[] => {
    const status = spawnSync(process.execPath, [CLI, 'status', '--name', name, '--json'], { encoding: 'utf8', env: { ...process.env, BELLWETHER_LOCK_DIR: lockDir } });
    assert.equal(status.status, 0, status.stderr);
    return (JSON.parse(status.stdout) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
  };
  killAtEnd(t, pids());
  return { primary, port, pids };
}

/** `promise`, with its rejection handled: it is awaited later, or not at all if the load failed first. */
export function awaitedLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/**
 * Runs the load, calls `stop` STOP_AFTER_MS in, and asserts that no client saw
 * a failure. `stopped` settles when the stop has done its work: the load then
 * goes on for LOAD_AFTER_STOP_MS more (without it, for the whole LOAD).
 */
export async function underLoad(cluster: Cluster, stop: () => void, stopped?: Promise<unknown>): Promise<void> {
  let tail: NodeJS.Timeout | undefined;
  const until = new Promise<void>((resolve) => {
    const later = (): void => void (tail = setTimeout(resolve, LOAD_AFTER_STOP_MS));
    stopped?.then(later, later);
  });
  const timer = setTimeout(stop, STOP_AFTER_MS);
  try {
    const result = await wrk(`http://127.0.0.1:${cluster.port}/`, { ...LOAD, until });
    assert.ok(result.requests > 1000, `too little load to tell: ${result.output}`);
    assert.deepEqual(failures(result), { socketErrors: 0, non2xx: 0 }, result.output);
  } finally {
    clearTimeout(timer);
    clearTimeout(tail);
  }
}

/** Signals the primary and awaits the end of the rolling restart it starts. */
export async function rollingRestart(t: TestContext, runtime: Runtime, app: string, workers: number, env: Record<string, string> = {}): Promise<void> {
  const cluster = await startCluster(t, runtime, app, workers, env);
  const before = cluster.pids();
  const done = awaitedLater(cluster.primary.stderrMatches(/rolling restart done: every worker replaced/));
  let doneUnderLoad = false;
  await underLoad(
    cluster,
    () => {
      process.kill(cluster.primary.pid, 'SIGHUP');
      void done.then(() => (doneUnderLoad = true), () => {});
    },
    done,
  );
  assert.ok(doneUnderLoad, 'the rolling restart ended while the load ran');
  const after = cluster.pids();
  killAtEnd(t, after);
  assert.equal(after.length, workers);
  assert.deepEqual(after.filter((pid) => before.includes(pid)), [], `every worker replaced: ${before} -> ${after}`);
  assert.deepEqual(await gone(before, 5000), [], 'the old workers exited');
}

