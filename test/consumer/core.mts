// A user's program on the core entry points, `bellwether` and
// `bellwether/worker`, compiled on its own (--strict, nodenext, no
// skipLibCheck) in a project where bellwether is installed from its tarball:
// with the optional peers (express, fastify, prom-client) and without them.
// Prints one JSON line of what it saw; the test checks it.
import http from 'node:http';
import { once } from 'node:events';
import {
  BellwetherError,
  Candidate,
  ErrorCodes,
  Observer,
  StatusBoard,
  Supervisor,
  ZkSession,
  singleton,
  type BellwetherStatus,
  type ErrorCode,
  type RunContext,
  type RunRecord,
  type Singleton,
  type Stat,
  type SupervisorOptions,
  type Transaction,
} from 'bellwether';
import { drainServer, trackConnections, worker, type WorkerRuntime } from 'bellwether/worker';

// Typed use of what needs a ZooKeeper server or a primary: compiled, not run.
async function moveTo(zk: ZkSession, from: string, to: string): Promise<Stat | null> {
  const tx: Transaction = zk.transaction().delete(from).create(to, 'moved', 'ephemeral').check('/', -1);
  await tx.commit();
  const stat = await zk.exists(to);
  const owner: string | undefined = stat?.ephemeralOwner;
  const zxid: bigint | undefined = stat?.czxid;
  return owner === undefined || zxid === undefined ? null : stat;
}
function elect(zk: ZkSession): Candidate {
  const candidate = new Candidate(zk, 'reporter', { data: 'me', stepDownAfter: 1000 });
  candidate.on('won', ({ token }: { token: number }) => void token.toFixed());
  new Observer(zk, 'reporter').on('leader', ({ leaderData }) => void leaderData.byteLength);
  return candidate;
}
function supervise(options: SupervisorOptions): Supervisor {
  const supervisor = new Supervisor({ ...options, workers: 2 });
  supervisor.on('ready', () => undefined);
  return supervisor;
}
function wrongUses(zk: ZkSession): void {
  // @ts-expect-error a scope is 'host', 'cluster' or 'host+cluster'
  singleton({ name: 'x', scope: 'fleet' });
  // @ts-expect-error a cluster singleton needs its session
  singleton({ name: 'x', scope: 'cluster' });
  // @ts-expect-error transaction() takes no argument
  zk.transaction('/a');
  // @ts-expect-error a create mode is 'persistent' or 'ephemeral'
  zk.transaction().create('/a', '', 'sequential');
}
void [moveTo, elect, supervise, wrongUses];

/** The code of the BellwetherError `make` throws. */
function codeOf(make: () => unknown): ErrorCode | undefined {
  try {
    make();
  } catch (err) {
    if (err instanceof BellwetherError) return err.code;
    throw err;
  }
  return undefined;
}

const runtime: WorkerRuntime = worker;
const ran: RunContext[] = [];
// keepAlive: this script awaits the election, and nothing else holds the process meanwhile.
const job: Singleton = singleton({ name: 'consumer-core', keepAlive: true, run: (context) => void ran.push(context) });
const elected = new Promise<number>((resolve) => job.once('elected', ({ token }) => resolve(token)));
const settled = new Promise<RunRecord>((resolve) => job.once('ran', resolve));
const board = new StatusBoard({ singletons: [job], metrics: true });
await board.start();
const token = await elected;
const record = await settled;
board.markReady();
const ready = board.ready;
const status: BellwetherStatus = board.snapshot();
const metrics = await board.metrics();
await board.close();

const server = http.createServer((_req, res) => res.end('ok'));
trackConnections(server);
server.listen(0, '127.0.0.1');
await once(server, 'listening');
await drainServer(server, { timeout: 1000 });

console.log(
  JSON.stringify({
    entry: 'core',
    supervised: runtime.isSupervised,
    index: runtime.index ?? null,
    token,
    ranWith: ran.map((context) => context.token),
    outcome: record.outcome,
    ready,
    singletons: status.singletons.map(({ name, leader }) => ({ name, leader })),
    metrics: metrics?.body.includes('bellwether_singleton_leader') ?? null,
    badName: codeOf(() => singleton({ name: 'not a name' })) === ErrorCodes.INVALID_NAME,
    badConnect: codeOf(() => new ZkSession({ connect: '' })) === ErrorCodes.INVALID_CONNECT_STRING,
    listening: server.listening,
  }),
);
