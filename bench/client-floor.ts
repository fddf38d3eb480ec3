/**
 * The floor under bellwether's handover: with node-zookeeper-client alone,
 * the time from one session's delete until another session's watch on that
 * node fires. A handover needs at least this much (the resign is a write,
 * the successor learns of it by that notification), whatever runs above it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper, { type Client } from 'node-zookeeper-client';
import { bounded } from '../test/helpers/bounded.js';

/** The contenders idle this long between rounds too. */
const IDLE_MS = 100;
const BOUND_MS = 5000;

function connected(connect: string): Promise<Client> {
  const client = zookeeper.createClient(connect, { sessionTimeout: 30_000 });
  const up = new Promise<Client>((resolve) => client.once('connected', () => resolve(client)));
  client.connect();
  return bounded('a node-zookeeper-client session', up, BOUND_MS).catch((err: unknown) => {
    client.close();
    throw err;
  });
}

function call<T>(run: (done: (err: unknown, value?: T) => void) => void): Promise<T> {
  return bounded('a node-zookeeper-client request', new Promise<T>((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T)))), BOUND_MS);
}

/** `rounds` deletes, each seen by the other session's exists watch: ms from the delete to the watch. */
export async function clientFloor(connect: string, rounds: number): Promise<number[]> {
  const [writer, watcher] = await Promise.all([connected(connect), connected(connect)]);
  const samples: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const node = await call<string>((done) => writer.create('/bw-floor-', Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done));
      let fired!: (at: number) => void;
      const seen = new Promise<number>((resolve) => (fired = resolve));
      await call((done) => watcher.exists(node, () => fired(performance.now()), done));
      await sleep(IDLE_MS);
      const deletedAt = performance.now();
      const deleted = call((done) => writer.remove(node, -1, done));
      samples.push((await bounded('the watch on the deleted node', seen, BOUND_MS)) - deletedAt);
      await deleted;
    }
    return samples;
  } finally {
    writer.close();
    watcher.close();
  }
}
