/**
 * A fleet on one ZooKeeper: N ZkSessions (one per simulated host) in one
 * process, each holding one `singleton({ scope: 'cluster' })`, all started
 * together as after a fleet-wide deploy. Per N: connect, elect, each
 * graceful failover's time and watch notifications (the first one after the
 * simultaneous start included), and the client's memory.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Singleton, ZkSession, singleton } from 'bellwether';
import { bounded } from '../test/helpers/bounded.js';
import { ZkEnsemble } from '../test/helpers/zookeeper.js';
import { table } from './stats.js';

const SIZES = [50, 200, 500, 1000];
const FAILOVERS = 5;
/** Long enough that pings (every third of it) barely show in the counts. */
const SESSION_TIMEOUT_MS = 30_000;
const BOUND_MS = 60_000;
/** "Quiet": no request sent and no notification received by any session for this long. */
const QUIET_MS = 300;

interface FleetRow {
  n: number;
  connectMs: number;
  electMs: number;
  settleMs: number;
  electRequests: number;
  electNotifications: number;
  failoverMs: number[];
  failoverNotifications: number[];
  failoverRequests: number[];
  heapPerSessionKb: number;
  rssMb: number;
  anomalies: string[];
}

/** Resolves when `test()` holds; polls (the fleet's events come from N emitters). Bounded. */
async function until(what: string, test: () => boolean, boundMs = BOUND_MS): Promise<void> {
  const deadline = performance.now() + boundMs;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`fleet bench: ${what}: not within ${boundMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function traffic(sessions: ZkSession[]): { requests: number; notifications: number } {
  let requests = 0;
  let notifications = 0;
  for (const zk of sessions) {
    requests += zk.operations;
    notifications += zk.notifications;
  }
  return { requests, notifications };
}

/** Waits until no session sent a request or got a notification for QUIET_MS. */
async function quiet(sessions: ZkSession[]): Promise<void> {
  const deadline = performance.now() + BOUND_MS;
  let last = JSON.stringify(traffic(sessions));
  let since = performance.now();
  while (performance.now() - since < QUIET_MS) {
    if (performance.now() > deadline) throw new Error(`fleet bench: traffic did not stop for ${QUIET_MS} ms within ${BOUND_MS} ms`);
    await sleep(20);
    const now = JSON.stringify(traffic(sessions));
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
}

async function fleet(connect: string, n: number, failovers: number): Promise<FleetRow> {
  const name = `fleet-${n}`;
  const anomalies: string[] = [];
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const sessions = Array.from({ length: n }, () => new ZkSession({ connect, sessionTimeout: SESSION_TIMEOUT_MS }));
  for (const zk of sessions) zk.on('error', (err) => anomalies.push(`session: ${err.message}`));
  const singletons: Singleton[] = [];
  /** Per host: runs started, and whether its job runs now. */
  const runs = new Array<number>(n).fill(0);
  const running = new Array<boolean>(n).fill(false);
  let startedAt = 0;
  const electedAt: number[] = [];
  try {
    const connectStart = performance.now();
    await bounded(`starting ${n} sessions`, Promise.all(sessions.map((zk) => zk.start())), BOUND_MS);
    const connectMs = performance.now() - connectStart;

    for (const [i, zk] of sessions.entries()) {
      const s = singleton({
        scope: 'cluster',
        name,
        zk,
        keepAlive: false,
        run: ({ signal }) => {
          runs[i]! += 1;
          running[i] = true;
          electedAt.push(performance.now());
          if (running.filter(Boolean).length > 1) anomalies.push(`${running.filter(Boolean).length} jobs running at once`);
          return new Promise<void>((resolve) =>
            signal.addEventListener(
              'abort',
              () => {
                running[i] = false;
                resolve();
              },
              { once: true },
            ),
          );
        },
      });
      s.on('error', (err) => anomalies.push(`singleton ${i}: ${err.message}`));
      singletons.push(s);
    }
    const before = traffic(sessions);
    startedAt = performance.now();
    await Promise.all(singletons.map((s) => s.start()));
    await until(`one of ${n} elected`, () => electedAt.length > 0);
    const electMs = electedAt[0]! - startedAt;
    await quiet(sessions);
    const settleMs = performance.now() - startedAt - QUIET_MS;
    const afterElect = traffic(sessions);

    const failoverMs: number[] = [];
    const failoverNotifications: number[] = [];
    const failoverRequests: number[] = [];
    for (let f = 0; f < failovers; f++) {
      const leader = running.indexOf(true);
      if (leader < 0) throw new Error(`fleet bench: no job running before failover ${f + 1}`);
      const t0 = traffic(sessions);
      const runsBefore = electedAt.length;
      const goneAt = performance.now();
      const closing = singletons[leader]!.close();
      await until(`a new leader after failover ${f + 1}`, () => electedAt.length > runsBefore);
      failoverMs.push(electedAt[runsBefore]! - goneAt);
      await bounded('close of the leader', closing, BOUND_MS);
      await quiet(sessions);
      const t1 = traffic(sessions);
      failoverNotifications.push(t1.notifications - t0.notifications);
      failoverRequests.push(t1.requests - t0.requests);
    }
    global.gc?.();
    const heapPerSessionKb = (process.memoryUsage().heapUsed - heapBefore) / n / 1024;
    return {
      n,
      connectMs,
      electMs,
      settleMs,
      electRequests: afterElect.requests - before.requests,
      electNotifications: afterElect.notifications - before.notifications,
      failoverMs,
      failoverNotifications,
      failoverRequests,
      heapPerSessionKb,
      rssMb: process.memoryUsage().rss / 2 ** 20,
      anomalies,
    };
  } finally {
    await bounded(`closing ${n} singletons`, Promise.all(singletons.map((s) => s.close())), BOUND_MS).catch(() => undefined);
    await Promise.all(sessions.map((zk) => zk.close()));
  }
}

export async function fleetBench(scale: number): Promise<string> {
  const sizes = scale < 1 ? SIZES.slice(0, 2) : SIZES;
  const ensemble = await ZkEnsemble.start({ servers: 1, tickTime: 50, minSessionTimeout: 100, config: ['maxClientCnxns=0'] });
  const rows: FleetRow[] = [];
  try {
    for (const n of sizes) rows.push(await fleet(ensemble.connectString(), n, FAILOVERS));
  } finally {
    await ensemble.close();
  }
  const ms = (values: number[]): string => values.map((v) => v.toFixed(1)).join(', ');
  const anomalies = rows.flatMap((r) => r.anomalies.map((a) => `N=${r.n}: ${a}`));
  return [
    table(
      `Fleet: N sessions (one per host) in one process, one singleton({ scope: 'cluster' }) each, started together; ${FAILOVERS} graceful failovers (leader close() -> next run starts)`,
      ['N', 'connect (ms)', 'elect: first run (ms)', 'settled (ms)', 'requests / notifications to settle', 'failovers, in order (ms)', 'notifications per failover', 'requests per failover', 'heap per host (KiB)', 'RSS (MiB)'],
      rows.map((r) => [
        r.n,
        r.connectMs.toFixed(0),
        r.electMs.toFixed(0),
        r.settleMs.toFixed(0),
        `${r.electRequests} / ${r.electNotifications}`,
        ms(r.failoverMs),
        r.failoverNotifications.join(', '),
        r.failoverRequests.join(', '),
        r.heapPerSessionKb.toFixed(1),
        r.rssMb.toFixed(0),
      ]),
    ),
    '\nsettled: until no session sent a request or received a notification for 300 ms (the 300 ms not counted).',
    anomalies.length ? `\nAnomalies:\n${anomalies.map((a) => `- ${a}`).join('\n')}` : '\nNo anomaly: never two jobs at once, no errors.',
  ].join('\n');
}
