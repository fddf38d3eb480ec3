/**
 * ZkSession against raw node-zookeeper-client, on one real ZooKeeper on
 * loopback: operation round trips, and time from an injected expiry to a
 * fully restored session (100 ephemerals, 100 watches).
 */
import { ZkSession } from 'bellwether';
import zookeeper from 'node-zookeeper-client';
import { bounded } from '../test/helpers/bounded.js';
import { TcpProxy } from '../test/helpers/tcp-proxy.js';
import { expireThroughProxy } from '../test/helpers/expire-through-proxy.js';
import { ZkEnsemble, idBuffer } from '../test/helpers/zookeeper.js';
import { medianDifference, summarize, table } from './stats.js';

type Op = () => Promise<unknown>;

/** Both clients ask for the same session timeout (ZkSession's default). */
const SESSION_TIMEOUT = 10_000;

function rawClient(connect: string): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connect, { sessionTimeout: SESSION_TIMEOUT });
  return new Promise((resolve) => {
    client.once('connected', () => resolve(client));
    client.connect();
  });
}

/** Closes a raw client and waits until the server has closed its session (its ephemerals are gone). */
function closeRaw(client: zookeeper.Client): Promise<void> {
  const closed = new Promise<void>((resolve) => client.once('disconnected', () => resolve()));
  client.close();
  return bounded('closing a raw client', closed, 5_000);
}

const promisify =
  <T>(run: (done: (err: unknown, value?: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));

/**
 * The two sides of round `round` in ABBA order (A B, B A, A B, ...): a
 * drift of the machine, or garbage one side leaves for the collector,
 * weighs on both alike. Each entry is [side index, item].
 */
function abba<T>(round: number, pair: readonly [T, T]): [0 | 1, T][] {
  return round % 2 === 0 ? [[0, pair[0]], [1, pair[1]]] : [[1, pair[1]], [0, pair[0]]];
}

const µs = (ms: number): string => (ms * 1000).toFixed(1);
const withInterval = (d: { difference: number; low: number; high: number }, unit: (ms: number) => string): string =>
  `${unit(d.difference)} [${unit(d.low)}, ${unit(d.high)}]`;

/**
 * Times `count` sequential calls of each op per side, in blocks of 100
 * alternating ABBA. Around each block, the process's CPU time (user +
 * system): with one side running at a time, that block's client CPU per
 * call (ZooKeeper's own is in its JVM, not counted).
 */
async function timeOps(ops: Record<string, [Op, Op]>, count: number): Promise<{ header: string[]; rows: string[][] }> {
  const block = 100;
  const rounds = Math.ceil(count / block);
  const n = rounds * block;
  // At n <= 100 the 99th percentile is the maximum.
  const withP99 = n > 100;
  const rows: string[][] = [];
  for (const [name, pair] of Object.entries(ops)) {
    const samples: [number[], number[]] = [[], []];
    const cpuPerCall: [number[], number[]] = [[], []]; // µs, one per block
    for (let i = 0; i < 50; i++) await Promise.all([pair[0](), pair[1]()]); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const [side, op] of abba(round, pair)) {
        const cpu = process.cpuUsage();
        for (let i = 0; i < block; i++) {
          const start = performance.now();
          await op();
          samples[side].push(performance.now() - start);
        }
        const used = process.cpuUsage(cpu);
        cpuPerCall[side].push((used.user + used.system) / block);
      }
    }
    const [a, b] = [summarize(samples[0]), summarize(samples[1])];
    rows.push([
      name,
      String(n),
      µs(a.median),
      µs(b.median),
      withInterval(medianDifference(samples[0], samples[1]), µs),
      `${(a.median / b.median).toFixed(2)}x`,
      ...(withP99 ? [µs(a.p99), µs(b.p99)] : [µs(a.max), µs(b.max)]),
      summarize(cpuPerCall[0]).median.toFixed(1),
      summarize(cpuPerCall[1]).median.toFixed(1),
      withInterval(medianDifference(cpuPerCall[0], cpuPerCall[1]), (x) => x.toFixed(1)),
    ]);
  }
  const tail = withP99 ? 'p99' : 'max';
  return {
    header: [
      'operation',
      'calls each',
      'ZkSession median',
      'raw median',
      'ZkSession - raw, median [95% CI]',
      'median ratio',
      `ZkSession ${tail}`,
      `raw ${tail}`,
      'ZkSession CPU/call',
      'raw CPU/call',
      'CPU ZkSession - raw [95% CI]',
    ],
    rows,
  };
}

interface Restores {
  ours: number[];
  raw: number[];
  /** Requests ZkSession sent for each restore (its `operations` counter). */
  oursRequests: number[];
  rawRequests: number;
  negotiated: { ours: number; raw: number };
}

/**
 * `rounds` restores of each side, ABBA. Both sides hold the same 100
 * ephemerals and 100 data watches when their session is expired, and
 * restore them with the same 200 requests in the same order: the 100
 * creates at once, then, once all are answered, the 100 watched reads at
 * once (ZkSession's order: ephemerals before watches).
 */
async function restoreTimes(ensemble: ZkEnsemble, rounds: number, size: number): Promise<Restores> {
  const port = ensemble.servers[0]!.clientPort;
  const proxy = new TcpProxy(port, { noDelay: true });
  await proxy.start();
  const connect = `127.0.0.1:${proxy.port}`;
  const result: Restores = { ours: [], raw: [], oursRequests: [], rawRequests: 2 * size, negotiated: { ours: 0, raw: 0 } };
  const setup = new ZkSession({ connect: ensemble.connectString() });
  await setup.start();
  for (let i = 0; i < size; i++) await setup.mkdirp(`/restore/w-${i}`);
  await setup.mkdirp('/restore/e');

  // bellwether: everything declared once, restored by the session.
  const zk = new ZkSession({ connect, sessionTimeout: SESSION_TIMEOUT });
  for (let i = 0; i < size; i++) {
    await zk.ephemeral(`/restore/e/${i}`);
    zk.watch(`/restore/w-${i}`, () => {});
  }
  zk.on('connected', ({ timeout }: { timeout: number }) => void (result.negotiated.ours = timeout));
  await zk.start();
  const ours = async (): Promise<void> => {
    const restored = new Promise<void>((resolve) => zk.once('connected', () => resolve()));
    const requestsBefore = zk.operations;
    const releasedAt = await expireThroughProxy(proxy, port, idBuffer(zk.sessionId!), zk.sessionPassword!);
    await bounded('ZkSession restored', restored, 10_000);
    result.ours.push(performance.now() - releasedAt);
    result.oursRequests.push(zk.operations - requestsBefore);
  };

  // By hand with raw node-zookeeper-client: notice `expired`, open a new client, re-create and re-watch everything.
  const createAll = (client: zookeeper.Client): Promise<unknown> =>
    Promise.all(Array.from({ length: size }, (_, i) => promisify((d) => client.create(`/restore/r-${i}`, zookeeper.CreateMode.EPHEMERAL, d))));
  const watchAll = (client: zookeeper.Client): Promise<unknown> =>
    Promise.all(Array.from({ length: size }, (_, i) => promisify((d) => client.getData(`/restore/w-${i}`, () => {}, d))));
  const raw = async (): Promise<void> => {
    const client = await rawClient(connect);
    await createAll(client);
    await watchAll(client);
    const expired = new Promise<void>((resolve) => client.once('expired', () => resolve()));
    const releasedAt = await expireThroughProxy(proxy, port, client.getSessionId(), client.getSessionPassword());
    await bounded('raw client expired', expired, 10_000); // the server closes its connection: nothing left to close
    const fresh = await rawClient(connect);
    await createAll(fresh);
    await watchAll(fresh);
    result.raw.push(performance.now() - releasedAt);
    result.negotiated.raw = fresh.getSessionTimeout();
    await closeRaw(fresh);
  };

  try {
    for (let round = 0; round < rounds; round++) {
      for (const [, restore] of abba(round, [ours, raw] as const)) await restore();
    }
  } finally {
    await zk.close();
    await proxy.close();
  }
  await setup.removeRecursive('/restore');
  await setup.close();
  return result;
}

export async function zkSession(scale: number): Promise<string> {
  const ensemble = await ZkEnsemble.start({ servers: 1 });
  try {
    const connect = ensemble.connectString();
    const zk = new ZkSession({ connect, sessionTimeout: SESSION_TIMEOUT });
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
    await closeRaw(raw);
    await zk.removeRecursive('/bench');
    await zk.close();

    const size = 100;
    const restores = await restoreTimes(ensemble, Math.max(2, Math.round(10 * scale)), size);
    const a = summarize(restores.ours);
    const b = summarize(restores.raw);
    const requests = summarize(restores.oursRequests);
    const ms = (x: number): string => x.toFixed(2);
    return [
      table(
        'ZooKeeper round trip, one server on loopback: ZkSession vs raw node-zookeeper-client, same run, blocks of 100 calls ABBA; ' +
          'µs per call (wall clock); CPU/call = the client process\'s CPU (user + system) per call, median of the blocks, µs',
        latency.header,
        latency.rows,
      ),
      table(
        `Injected expiry -> new session fully restored (${size} ephemerals + ${size} watches), rounds ABBA, ms; ` +
          `session timeout asked ${SESSION_TIMEOUT} ms, negotiated ${restores.negotiated.ours} (ZkSession) / ${restores.negotiated.raw} (raw)`,
        ['client', 'rounds', 'requests per restore', 'min', 'median', 'max', 'median - raw [95% CI]'],
        [
          ['ZkSession (automatic)', String(a.n), requests.min === requests.max ? String(requests.min) : `${requests.min}-${requests.max}`, ms(a.min), ms(a.median), ms(a.max), withInterval(medianDifference(restores.ours, restores.raw), ms)],
          ['raw node-zookeeper-client, restored by hand', String(b.n), String(restores.rawRequests), ms(b.min), ms(b.median), ms(b.max), ''],
        ],
      ),
    ].join('\n');
  } finally {
    await ensemble.close();
  }
}
