/**
 * ZkSession against raw node-zookeeper-client, on one real ZooKeeper on
 * loopback: operation round trips, and time from an injected expiry to a
 * fully restored session (100 ephemerals, 100 watches).
 */
import { ZkSession } from 'bellwether';
import zookeeper from 'node-zookeeper-client';
import { ZkEnsemble, expireSession, idBuffer } from '../test/helpers/zookeeper.js';
import { summarize, table } from './stats.js';

type Op = () => Promise<unknown>;

function rawClient(connect: string): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connect, { sessionTimeout: 10_000 });
  return new Promise((resolve) => {
    client.once('connected', () => resolve(client));
    client.connect();
  });
}

const promisify =
  <T>(run: (done: (err: unknown, value?: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));

/** Times `count` sequential calls of each op, alternating blocks so both sides see the same conditions. */
async function timeOps(ops: Record<string, [Op, Op]>, count: number): Promise<(string | number)[][]> {
  const rows: (string | number)[][] = [];
  for (const [name, [ours, raw]] of Object.entries(ops)) {
    const samples: [number[], number[]] = [[], []];
    for (let i = 0; i < 50; i++) await Promise.all([ours(), raw()]); // warm-up
    const block = 100;
    for (let done = 0; done < count; done += block) {
      for (const [side, op] of [ours, raw].entries()) {
        for (let i = 0; i < block; i++) {
          const start = performance.now();
          await op();
          samples[side]!.push(performance.now() - start);
        }
      }
    }
    const [a, b] = [summarize(samples[0]), summarize(samples[1])];
    rows.push([name, a.n, a.median * 1000, b.median * 1000, a.p99 * 1000, b.p99 * 1000, `${(a.median / b.median).toFixed(2)}x`]);
  }
  return rows;
}

async function restoreTimes(ensemble: ZkEnsemble, rounds: number, size: number): Promise<[number[], number[]]> {
  const connect = ensemble.connectString();
  const port = ensemble.servers[0]!.clientPort;
  const ours: number[] = [];
  const raw: number[] = [];
  const setup = new ZkSession({ connect });
  await setup.start();
  for (let i = 0; i < size; i++) await setup.mkdirp(`/restore/w-${i}`);

  // bellwether: everything declared once, restored by the session.
  const zk = new ZkSession({ connect, sessionTimeout: 2000 });
  for (let i = 0; i < size; i++) {
    await zk.ephemeral(`/restore/e/${i}`);
    zk.watch(`/restore/w-${i}`, () => {});
  }
  await zk.start();
  for (let round = 0; round < rounds; round++) {
    const restored = new Promise<void>((resolve) => zk.once('connected', () => resolve()));
    await expireSession(port, idBuffer(zk.sessionId!), zk.sessionPassword!);
    const expiredAt = performance.now();
    await restored;
    ours.push(performance.now() - expiredAt);
  }
  await zk.close();

  // By hand with raw node-zookeeper-client: a new client, then re-create and re-watch everything.
  for (let round = 0; round < rounds; round++) {
    const client = await rawClient(connect);
    await Promise.all(Array.from({ length: size }, (_, i) => promisify((d) => client.create(`/restore/r-${i}`, zookeeper.CreateMode.EPHEMERAL, d))));
    const expired = new Promise<void>((resolve) => client.once('expired', () => resolve()));
    await expireSession(port, client.getSessionId(), client.getSessionPassword());
    const expiredAt = performance.now();
    await expired;
    const fresh = await rawClient(connect);
    await Promise.all([
      ...Array.from({ length: size }, (_, i) => promisify((d) => fresh.create(`/restore/r-${i}`, zookeeper.CreateMode.EPHEMERAL, d))),
      ...Array.from({ length: size }, (_, i) => promisify((d) => fresh.getData(`/restore/w-${i}`, () => {}, d))),
    ]);
    raw.push(performance.now() - expiredAt);
    fresh.close();
  }
  await setup.removeRecursive('/restore');
  await setup.close();
  return [ours, raw];
}

export async function zkSession(scale: number): Promise<string> {
  const ensemble = await ZkEnsemble.start({ servers: 1 });
  try {
    const connect = ensemble.connectString();
    const zk = new ZkSession({ connect });
    await zk.start();
    const raw = await rawClient(connect);
    await zk.mkdirp('/bench/ours');
    await zk.mkdirp('/bench/raw');
    const ops: Record<string, [Op, Op]> = {
      get: [() => zk.get('/bench'), () => promisify((d) => raw.getData('/bench', d))],
      set: [() => zk.set('/bench', 'x'), () => promisify((d) => raw.setData('/bench', Buffer.from('x'), d))],
      'create (ephemeral-sequential)': [
        () => zk.create('/bench/ours/n-', 'x', { mode: 'ephemeral-sequential' }),
        () => promisify((d) => raw.create('/bench/raw/n-', Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, d)),
      ],
    };
    const latency = await timeOps(ops, Math.max(100, Math.round(2000 * scale)));
    raw.close();
    await zk.removeRecursive('/bench');
    await zk.close();

    const size = 100;
    const [ours, byHand] = await restoreTimes(ensemble, Math.max(2, Math.round(10 * scale)), size);
    const a = summarize(ours);
    const b = summarize(byHand);
    return [
      table(
        'ZooKeeper round trip, one server on loopback (µs): ZkSession vs raw node-zookeeper-client, same run',
        ['operation', 'calls each', 'ZkSession median', 'raw median', 'ZkSession p99', 'raw p99', 'median ratio'],
        latency,
      ),
      table(
        `Injected expiry -> new session fully restored (${size} ephemerals + ${size} watches), ms`,
        ['client', 'rounds', 'min', 'median', 'max'],
        [
          ['ZkSession (automatic)', a.n, a.min, a.median, a.max],
          ['raw node-zookeeper-client, restored by hand', b.n, b.min, b.median, b.max],
        ],
      ),
    ].join('\n');
  } finally {
    await ensemble.close();
  }
}
