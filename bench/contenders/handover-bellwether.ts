/**
 * bellwether contenders for `npm run bench -- handover` (bench/handover.ts):
 * N ZkSessions in this process, each with a singleton({ scope: 'cluster' }).
 * The job "starts" when `run` is called; the leader resigns with close().
 *
 * argv: connect sessionTimeoutMs n rounds name
 * Speaks the handover protocol on stdin/stdout (JSON lines), per round:
 *   -> {"event":"ready"}     one leader runs, the other n-1 wait, ~100 ms idle
 *   <- go                    -> the leader's singleton.close(), timed until the next run
 *   -> {"event":"handover","ms":...}
 *   <- next                  -> {"event":"ops","ops":<zk.operations of all sessions since go>},
 *                               then a fresh singleton on the old leader's session (always n)
 * then {"event":"done"}. Errors: {"event":"error","message":...}, exit 1. EOF on stdin: exit.
 */
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_ELECTION_ROOT, type Singleton, ZkSession, singleton } from 'bellwether';
import { bounded } from '../../test/helpers/bounded.js';

/** Every wait is bounded by one of these. */
const START_MS = 20_000;
const HANDOVER_MS = 10_000;
const IDLE_MS = 100;

const [connect, sessionTimeout, n, rounds, name] = process.argv.slice(2) as [string, string, string, string, string];
const say = (event: string, fields: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const fail = (message: string): never => {
  say('error', { message });
  process.exit(1);
};

// stdin, line by line; EOF (the harness has gone) ends the process.
const lines: string[] = [];
let waiter: (() => void) | undefined;
let ended = false;
readline
  .createInterface({ input: process.stdin })
  .on('line', (line) => {
    lines.push(line);
    waiter?.();
  })
  .on('close', () => {
    ended = true;
    waiter?.();
  });
async function expect(command: string): Promise<void> {
  while (lines.length === 0) {
    if (ended) process.exit(0);
    await new Promise<void>((resolve) => (waiter = resolve));
  }
  const line = lines.shift();
  if (line !== command) fail(`expected ${command}, got ${line}`);
}

interface Contender {
  zk: ZkSession;
  job: Singleton;
}
interface Start {
  who: Contender;
  at: number;
}
const starts: Start[] = [];
let started: (() => void) | undefined;

function join(zk: ZkSession): Contender {
  const contender: Contender = {
    zk,
    job: singleton({
      scope: 'cluster',
      name,
      zk,
      run: ({ signal }) => {
        starts.push({ who: contender, at: performance.now() });
        started?.();
        return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      },
    }),
  };
  contender.job.on('error', (err) => fail(`singleton error: ${err.message}`));
  void contender.job.start();
  return contender;
}

async function nextStart(ms: number, what: string): Promise<Start> {
  const deadline = performance.now() + ms;
  while (starts.length === 0) {
    const left = deadline - performance.now();
    if (left <= 0) fail(`no run started within ${ms} ms: ${what}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      started = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    started = undefined;
  }
  return starts.shift()!;
}

const operations = (sessions: ZkSession[]): number => sessions.reduce((sum, zk) => sum + zk.operations, 0);

const { version } = createRequire(import.meta.url)('bellwether/package.json') as { version: string };
say('version', { version });
const sessions = Array.from({ length: Number(n) }, () => new ZkSession({ connect, sessionTimeout: Number(sessionTimeout) }));
for (const zk of sessions) zk.on('error', (err) => fail(`session error: ${err.message}`));
await bounded(`starting ${n} sessions`, Promise.all(sessions.map((zk) => zk.start())), START_MS).catch((err: Error) => fail(err.message));
const dir = `${DEFAULT_ELECTION_ROOT}/${name}`;
const contenders = sessions.map(join);
let leader = await nextStart(START_MS, 'the first election');

for (let round = 0; round < Number(rounds); round++) {
  // Ready: one leader runs, and n ballots stand (the others wait behind it).
  const deadline = performance.now() + START_MS;
  while ((await sessions[0]!.children(dir)).filter((child) => child.startsWith('ballot')).length !== Number(n)) {
    if (performance.now() > deadline) fail(`not ${n} ballots within ${START_MS} ms`);
    await sleep(10);
  }
  if (starts.length > 0) fail(`a second leader before round ${round}`);
  await sleep(IDLE_MS);
  say('ready');
  await expect('go');
  const before = operations(sessions);
  const goneAt = performance.now();
  const closed = leader.who.job.close();
  const next = await nextStart(HANDOVER_MS, `after the leader's singleton closed (round ${round})`);
  if (next.who === leader.who) fail('the closed singleton ran again');
  say('handover', { ms: next.at - goneAt });
  await expect('next');
  say('ops', { ops: operations(sessions) - before });
  await bounded(`close() of the old leader (round ${round})`, closed, HANDOVER_MS).catch((err: Error) => fail(err.message));
  contenders[contenders.indexOf(leader.who)] = join(leader.who.zk); // n again
  leader = next;
}
say('done');
await bounded('closing the singletons and sessions', Promise.all(contenders.map((c) => c.job.close())).then(() => Promise.all(sessions.map((zk) => zk.close()))), START_MS).catch(
  (err: Error) => fail(err.message),
);
process.exit(0);
