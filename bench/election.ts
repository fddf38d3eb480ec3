/**
 * ZooKeeper leader election (Candidate) on one real ZooKeeper on loopback:
 * handover time on graceful resign and on SIGKILL of the leader (against the
 * negotiated session timeout), ZooKeeper operations and watch notifications
 * per failover among 20 candidates, and the time for 200 candidates to elect.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Candidate, ZkSession } from 'bellwether';
import { bounded } from '../test/helpers/bounded.js';
import { ZkEnsemble } from '../test/helpers/zookeeper.js';
import { summarize, table } from './stats.js';

const CONTENDER = new URL('./contenders/candidate.js', import.meta.url).pathname;
/** Every bounded wait uses one of these. */
const START_MS = 20_000;
const SETTLE_MS = 5_000;
/** Followers have usually waited a while when the leader goes: let them go idle first. */
const IDLE_MS = 100;
/** "Quiet": no ZooKeeper request from any session for this long. */
const QUIET_MS = 200;

/** Anything that may make a waited-for condition true announces it here. */
const changes = new EventEmitter();
changes.setMaxListeners(0);
const changed = (): void => void changes.emit('change');

/** Resolves with `test()`'s first non-undefined value, checked at every change; rejects after `timeoutMs` or when `test` throws. */
function waitFor<T>(what: string, test: () => T | undefined, timeoutMs: number, detail?: () => string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const finish = (): void => {
      clearTimeout(timer);
      changes.off('change', check);
    };
    const check = (): void => {
      let value: T | undefined;
      try {
        value = test();
      } catch (err) {
        finish();
        reject(err as Error);
        return;
      }
      if (value !== undefined) {
        finish();
        resolve(value);
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`waiting for ${what}: not within ${timeoutMs} ms${detail ? `; ${detail()}` : ''}`));
    }, timeoutMs);
    changes.on('change', check);
    check();
  });
}

// ---------------------------------------------------------------------------
// Candidates in child processes (the contender fixture)

interface Line {
  at: number;
  text: string;
}

/** A contender process; every stdout line is kept with the time it arrived. */
class Contender {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  readonly exited: Promise<void>;

  constructor(
    readonly id: number,
    connect: string,
    sessionTimeout: number,
    name: string,
  ) {
    this.child = spawn(process.execPath, [CONTENDER, connect, String(sessionTimeout), name], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.exited = new Promise((resolve) => {
      const done = (): void => {
        resolve();
        changed();
      };
      this.child.once('exit', done);
      this.child.once('error', done);
    });
    this.child.stdin!.on('error', () => {}); // EPIPE once it died
    readline.createInterface({ input: this.child.stdout! }).on('line', (text) => {
      this.lines.push({ at: performance.now(), text });
      changed();
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first line starting with `prefix` at or after line index `from`. */
  find(prefix: string, from = 0): Line | undefined {
    return this.lines.slice(from).find((l) => l.text.startsWith(prefix));
  }

  count(prefix: string, from = 0): number {
    return this.lines.slice(from).filter((l) => l.text.startsWith(prefix)).length;
  }

  /** It printed `won` and no `demoted` since. */
  get leading(): boolean {
    return this.lines.findLast((l) => l.text.startsWith('won ') || l.text.startsWith('demoted '))?.text.startsWith('won ') ?? false;
  }

  get timeout(): number | undefined {
    const line = this.find('timeout ');
    return line ? Number(line.text.split(' ')[1]) : undefined;
  }

  send(command: string): void {
    this.child.stdin!.write(`${command}\n`);
  }

  describe(): string {
    return `contender ${this.id} (pid ${this.child.pid}, ${this.alive ? 'alive' : 'exited'}) said: ${this.lines.map((l) => l.text).join(' / ') || 'nothing'}`;
  }

  /** Waits for a line starting with `prefix` (at or after `from`); fails early if the process exits. */
  waitLine(prefix: string, timeoutMs: number, from = 0): Promise<Line> {
    return waitFor(
      `"${prefix}" from contender ${this.id}`,
      () => {
        const line = this.find(prefix, from);
        if (line) return line;
        if (!this.alive) throw new Error(`contender ${this.id} exited before printing "${prefix}"; ${this.describe()}`);
        return undefined;
      },
      timeoutMs,
      () => this.describe(),
    );
  }

  /** Ends stdin (it closes its candidate and session, then exits); SIGKILL if it has not exited in time. */
  async stop(timeoutMs = SETTLE_MS): Promise<void> {
    this.child.stdin!.end();
    const outcome = await Promise.race([this.exited.then(() => 'exited' as const), sleep(timeoutMs, 'late' as const)]);
    if (outcome === 'late') await this.kill();
  }

  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    this.child.stdin!.destroy();
    await bounded(`contender ${this.id} (pid ${this.child.pid}) to exit after SIGKILL`, this.exited, SETTLE_MS);
  }
}

interface HandoverResult {
  samples: number[];
  timeout: number;
  anomalies: string[];
}

/**
 * K contender processes; each round the leader goes (resign on stdin, or
 * SIGKILL) and the time until another prints `won` is taken, then a fresh
 * contender replaces it.
 */
async function handover(connect: string, how: 'resign' | 'kill', sessionTimeout: number, rounds: number, k = 3): Promise<HandoverResult> {
  const name = `bench-${how}`;
  const samples: number[] = [];
  const anomalies: string[] = [];
  let next = 0;
  const procs: Contender[] = [];
  const all: Contender[] = [];
  const add = (): Contender => {
    const proc = new Contender(next++, connect, sessionTimeout, name);
    procs.push(proc);
    all.push(proc);
    return proc;
  };
  const leaders = (): Contender[] => procs.filter((p) => p.alive && p.leading);
  const everyone = (): string => procs.map((p) => p.describe()).join('; ');
  try {
    for (let i = 0; i < k; i++) add();
    await Promise.all(procs.map((p) => p.waitLine('ready', START_MS)));
    let leader = await waitFor('one leader among the first contenders', () => (leaders().length === 1 ? leaders()[0] : undefined), SETTLE_MS, everyone);
    await Promise.all(procs.filter((p) => p !== leader).map((p) => p.waitLine('lost ', SETTLE_MS)));
    const timeout = leader.timeout!;
    const waitBound = how === 'kill' ? 10 * timeout : SETTLE_MS;

    for (let round = 0; round < rounds; round++) {
      await sleep(IDLE_MS);
      const others = procs.filter((p) => p !== leader);
      const marks = new Map(others.map((p) => [p, p.lines.length]));
      const wonSince = (p: Contender): Line | undefined => p.find('won ', marks.get(p));
      const goneAt = performance.now();
      if (how === 'resign') leader.send('resign');
      else leader.child.kill('SIGKILL');
      const winner = await waitFor(
        `another contender to win after the leader ${how === 'resign' ? 'resigned' : 'was killed'} (round ${round + 1})`,
        () => others.find((p) => wonSince(p)),
        waitBound,
        everyone,
      );
      samples.push(wonSince(winner)!.at - goneAt);
      if (how === 'resign') {
        await leader.waitLine('resigned', SETTLE_MS);
        if (!leader.find('demoted resigned')) anomalies.push(`${how} round ${round + 1}: the resigned leader printed no "demoted resigned"`);
        await leader.stop();
      } else {
        await leader.kill();
      }
      procs.splice(procs.indexOf(leader), 1);
      const fresh = add();
      await fresh.waitLine('ready', START_MS);
      try {
        await fresh.waitLine('lost ', SETTLE_MS);
      } catch {
        anomalies.push(`${how} round ${round + 1}: a candidate that joined under an acknowledged leader never emitted lost; ${fresh.describe()}`);
      }
      const winners = others.filter((p) => wonSince(p));
      if (winners.length !== 1 || leaders().length !== 1) {
        anomalies.push(`${how} round ${round + 1}: ${winners.length} contenders won, ${leaders().length} lead now; ${everyone()}`);
      }
      leader = winner;
    }
    return { samples, timeout, anomalies };
  } finally {
    await Promise.all(all.map((p) => p.kill().catch(() => undefined)));
  }
}

// ---------------------------------------------------------------------------
// Candidates in this process

/** A Candidate and what it said. */
class Tracked {
  readonly candidate: Candidate;
  wins = 0;
  losses = 0;
  leading = false;
  wonAt: number | undefined;
  readonly errors: string[] = [];

  constructor(
    readonly index: number,
    readonly zk: ZkSession,
    name: string,
  ) {
    this.candidate = new Candidate(zk, name, { data: `candidate-${index}` });
    this.candidate.on('won', () => {
      this.wins += 1;
      this.leading = true;
      this.wonAt = performance.now();
      changed();
    });
    this.candidate.on('lost', () => {
      this.losses += 1;
      changed();
    });
    this.candidate.on('demoted', () => {
      this.leading = false;
      changed();
    });
    this.candidate.on('error', (err) => void this.errors.push(err.message));
  }
}

async function startSessions(connect: string, count: number, sessionTimeout: number): Promise<ZkSession[]> {
  const sessions = Array.from({ length: count }, () => new ZkSession({ connect, sessionTimeout }));
  for (const zk of sessions) zk.on('error', (err) => process.stderr.write(`election bench session: ${err.message}\n`));
  await bounded(`starting ${count} ZooKeeper sessions`, Promise.all(sessions.map((zk) => zk.start())), START_MS).catch(async (err: unknown) => {
    await Promise.all(sessions.map((zk) => zk.close()));
    throw err;
  });
  return sessions;
}

/** Waits until no session sent a request or got a notification for QUIET_MS. */
async function quiet(sessions: ZkSession[], boundMs = SETTLE_MS): Promise<void> {
  const signature = (): string => sessions.map((zk) => `${zk.operations}/${zk.notifications}`).join(',');
  const deadline = performance.now() + boundMs;
  let last = signature();
  let since = performance.now();
  while (performance.now() - since < QUIET_MS) {
    if (performance.now() > deadline) throw new Error(`ZooKeeper traffic of ${sessions.length} sessions did not stop for ${QUIET_MS} ms within ${boundMs} ms`);
    await sleep(10);
    const now = signature();
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
}

interface FailoverCost {
  operations: number[];
  notifications: number[];
  handover: number[];
  anomalies: string[];
}

/** N candidates, each on its own session; per failover (the leader resigns), the requests and notifications of all sessions. */
async function failoverCost(connect: string, n: number, failovers: number): Promise<FailoverCost> {
  const name = 'bench-ops';
  const result: FailoverCost = { operations: [], notifications: [], handover: [], anomalies: [] };
  const sessions = await startSessions(connect, n, 2000);
  const tracked: Tracked[] = [];
  const leaders = (): Tracked[] => tracked.filter((t) => t.leading);
  const describe = (): string => tracked.map((t) => `#${t.index}: ${t.wins} won, ${t.losses} lost, ${t.leading ? 'leads' : 'follows'}`).join('; ');
  try {
    for (const [i, zk] of sessions.entries()) tracked.push(new Tracked(i, zk, name));
    await bounded(`vote() of ${n} candidates`, Promise.all(tracked.map((t) => t.candidate.vote())), START_MS);
    await waitFor(`one leader and ${n - 1} losers among ${n} candidates`, () => (leaders().length === 1 && tracked.filter((t) => t.losses > 0).length === n - 1) || undefined, SETTLE_MS, describe);
    await quiet(sessions);

    for (let f = 0; f < failovers; f++) {
      const old = leaders()[0]!;
      const before = sessions.map((zk) => [zk.operations, zk.notifications] as const);
      const winsBefore = tracked.map((t) => t.wins);
      const goneAt = performance.now();
      await bounded(`close() of the leading candidate (failover ${f + 1})`, old.candidate.close(), SETTLE_MS);
      const winner = await waitFor(
        `a new leader after the leader resigned (failover ${f + 1})`,
        () => tracked.find((t) => t !== old && t.wins > winsBefore[t.index]!),
        SETTLE_MS,
        describe,
      );
      result.handover.push(winner.wonAt! - goneAt);
      await quiet(sessions);
      result.operations.push(sessions.reduce((sum, zk, i) => sum + zk.operations - before[i]![0], 0));
      result.notifications.push(sessions.reduce((sum, zk, i) => sum + zk.notifications - before[i]![1], 0));
      const notified = result.notifications.at(-1)!;
      if (notified > 3) {
        result.anomalies.push(
          `failover ${f + 1}: ${notified} watch notifications and ${result.operations.at(-1)} requests across ${n} sessions ` +
            "(herd-free: 3, the successor's, the one second in line's, and the resigner's own; a herd here is losers woken by a watch on leader_ack)",
        );
      }
      const newWinners = tracked.filter((t) => t !== old && t.wins > winsBefore[t.index]!);
      if (newWinners.length !== 1 || leaders().length !== 1) {
        result.anomalies.push(`failover ${f + 1}: ${newWinners.length} candidates won, ${leaders().length} lead; ${describe()}`);
      }
      // A fresh candidate on the resigned one's session, so that there are always N.
      const fresh = new Tracked(old.index, old.zk, name);
      tracked[old.index] = fresh;
      await bounded(`vote() of a replacement candidate (failover ${f + 1})`, fresh.candidate.vote(), SETTLE_MS);
      await waitFor(`the replacement candidate to learn of the leader (failover ${f + 1})`, () => fresh.losses > 0 || undefined, SETTLE_MS, describe).catch(() => {
        result.anomalies.push(`failover ${f + 1}: a candidate that joined under an acknowledged leader never emitted lost`);
      });
      await quiet(sessions);
    }
    for (const t of tracked) for (const message of t.errors) result.anomalies.push(`candidate #${t.index} error: ${message}`);
    return result;
  } finally {
    await Promise.all(tracked.map((t) => bounded('closing a candidate', t.candidate.close(), SETTLE_MS).catch(() => undefined)));
    await Promise.all(sessions.map((zk) => zk.close()));
  }
}

interface CrowdResult {
  samples: number[];
  /** Requests and notifications of the shared session, from vote() until vote() resolved and all had won or lost. */
  operations: number[];
  notifications: number[];
  anomalies: string[];
}

/** `count` candidates on ONE session vote at once: time until one won and all others lost. */
async function crowd(connect: string, count: number, rounds: number): Promise<CrowdResult> {
  const name = 'bench-crowd';
  const samples: number[] = [];
  const operations: number[] = [];
  const notifications: number[] = [];
  const anomalies: string[] = [];
  const [zk] = await startSessions(connect, 1, 5000);
  let tracked: Tracked[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      tracked = Array.from({ length: count }, (_, i) => new Tracked(i, zk!, name));
      const describe = (): string => {
        const winners = tracked.filter((t) => t.wins > 0).map((t) => `#${t.index}`);
        return `winners ${winners.join(',') || 'none'}, ${tracked.filter((t) => t.losses > 0).length} emitted lost, ${tracked.filter((t) => t.wins === 0 && t.losses === 0).length} emitted nothing`;
      };
      const [ops0, notes0] = [zk!.operations, zk!.notifications];
      const startedAt = performance.now();
      const voted = Promise.all(tracked.map((t) => t.candidate.vote()));
      voted.catch(() => undefined); // awaited below, bounded
      const electedAt = await waitFor(
        `1 won + ${count - 1} lost among ${count} candidates on one session (round ${round + 1})`,
        () => {
          const winners = tracked.filter((t) => t.wins > 0);
          if (winners.length > 1) throw new Error(`${winners.length} candidates won (round ${round + 1}); ${describe()}`);
          return winners.length === 1 && tracked.every((t) => t.wins > 0 || t.losses > 0) ? performance.now() : undefined;
        },
        60_000,
        describe,
      );
      samples.push(electedAt - startedAt);
      await bounded(`vote() of ${count} candidates (round ${round + 1})`, voted, SETTLE_MS);
      await quiet([zk!]);
      operations.push(zk!.operations - ops0);
      notifications.push(zk!.notifications - notes0);
      const winner = tracked.find((t) => t.wins > 0)!;
      const ack = await zk!.get(winner.candidate.paths.ack).catch(() => null);
      if (ack?.data.toString() !== `candidate-${winner.index}`) {
        anomalies.push(`crowd round ${round + 1}: the ack holds ${ack ? `"${ack.data.toString()}"` : 'nothing'}, the winner is candidate-${winner.index}`);
      }
      await sleep(IDLE_MS);
      const late = tracked.filter((t) => t.wins > 0).length;
      if (late !== 1) anomalies.push(`crowd round ${round + 1}: ${late} winners ${IDLE_MS} ms after the election`);
      for (const t of tracked) for (const message of t.errors) anomalies.push(`crowd round ${round + 1}, candidate #${t.index} error: ${message}`);
      await bounded(`closing ${count} candidates (round ${round + 1})`, Promise.all(tracked.map((t) => t.candidate.close())), SETTLE_MS * 2);
      tracked = [];
      await bounded('removing the election directory', zk!.removeRecursive(winner.candidate.paths.dir), SETTLE_MS);
    }
    return { samples, operations, notifications, anomalies };
  } finally {
    await bounded('closing candidates', Promise.all(tracked.map((t) => t.candidate.close())), SETTLE_MS * 2).catch(() => undefined);
    await zk!.close();
  }
}

export async function election(scale: number): Promise<string> {
  const ensemble = await ZkEnsemble.start({ servers: 1, tickTime: 50, minSessionTimeout: 100 });
  try {
    const connect = ensemble.connectString();
    const resign = await handover(connect, 'resign', 2000, Math.max(3, Math.round(20 * scale)));
    const kill = await handover(connect, 'kill', 1000, Math.max(3, Math.round(10 * scale)));
    const n = 20;
    const cost = await failoverCost(connect, n, Math.max(3, Math.round(10 * scale)));
    const count = 200;
    const elect = await crowd(connect, count, Math.max(2, Math.round(5 * scale)));

    const handoverRow = (label: string, r: HandoverResult): (string | number)[] => {
      const s = summarize(r.samples);
      return [label, s.n, r.timeout, s.min, s.median, s.max, (s.median / r.timeout).toFixed(3)];
    };
    const costRow = (label: string, samples: number[]): (string | number)[] => {
      const s = summarize(samples);
      return [label, s.n, s.min, s.median, s.max, samples.join(' ')];
    };
    const e = summarize(elect.samples);
    const anomalies = [...resign.anomalies, ...kill.anomalies, ...cost.anomalies, ...elect.anomalies];
    return [
      table(
        'Election handover, 3 candidate processes (Node), one ZooKeeper on loopback: the leader goes -> another prints won (ms; min, median and max of the rounds)',
        ['leader goes by', 'rounds', 'negotiated session timeout', 'min', 'median', 'max', 'median / timeout'],
        [handoverRow('candidate.close() (graceful resign)', resign), handoverRow('SIGKILL (server expires its session)', kill)],
      ) +
        '\nSIGKILL: the server counts the timeout from the last packet of the session (an idle client pings every timeout/3),' +
        '\nso the next candidate wins between about 2/3 and 1 negotiated timeout (plus up to one tick) after the kill.',
      table(
        `Election cost: per failover among ${n} candidates in ${n} sessions (one process), and ${count} candidates on one session electing (min, median and max of the samples, each listed)`,
        ['measure', 'samples', 'min', 'median', 'max', 'all samples'],
        [
          costRow(`ZooKeeper requests per failover, all ${n} sessions`, cost.operations),
          costRow(`watch notifications per failover, all ${n} sessions`, cost.notifications),
          costRow(`resign -> next won in-process (ms)`, cost.handover.map((ms) => Number(ms.toFixed(2)))),
          [`${count} candidates, one session: vote() -> 1 won + ${count - 1} lost (ms)`, e.n, e.min, e.median, e.max, elect.samples.map((ms) => ms.toFixed(0)).join(' ')],
          costRow(`${count} candidates, one session: ZooKeeper requests per election`, elect.operations),
          costRow(`${count} candidates, one session: watch notifications per election`, elect.notifications),
        ],
      ),
      anomalies.length ? `\nAnomalies:\n${anomalies.map((a) => `- ${a}`).join('\n')}` : '\nNo anomaly: one winner per round, every joiner learned of the leader, no candidate errors.',
    ].join('\n');
  } finally {
    await ensemble.close();
  }
}
