/**
 * Graceful handover: bellwether's singleton({ scope: 'cluster' }) against
 * Apache Curator's LeaderLatch and kazoo's Election, in one run, on one
 * ZooKeeper on loopback. Each implementation runs N contenders in one process
 * of its own (bench/contenders/handover-bellwether.ts, bench/peers/), one
 * implementation after the other; per round the leader closes and the time
 * until the next contender's job starts is taken in that process (a monotonic
 * clock, no cross-process timing). The ZooKeeper requests per failover are
 * the server's received-packet counter (srvr), the same for all three.
 *
 * The peers come from Debian: `apt-get install -y libcurator-recipes-java
 * python3-kazoo` (and a JDK for javac); a peer that is missing is skipped with
 * a line saying so.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { bounded } from '../test/helpers/bounded.js';
import { ZkEnsemble, findJar, fourLetterWord } from '../test/helpers/zookeeper.js';
import { LineChild } from './lines.js';
import { clientFloor } from './client-floor.js';
import { summarize, table } from './stats.js';

/** Long, so that idle clients rarely ping (about every third of it) inside a counted window. */
const SESSION_TIMEOUT_MS = 120_000;
/** Every bounded wait uses one of these. */
const START_MS = 60_000;
const ROUND_MS = 15_000;
const SETTLE_MS = 5_000;
/** "Settled": the server received no packet (but our srvr reads) for this long. */
const QUIET_MS = 200;
const POLL_MS = 20;
/** Rounds run first and not counted (JIT warm-up, first connections), for every implementation alike. */
const WARMUP = 2;
const PYTHON = '/usr/bin/python3';
const INSTALL = 'apt-get install -y libcurator-recipes-java python3-kazoo';
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** build/bench -> the sources of the peers, which are not compiled by tsc. */
const PEERS = path.resolve(HERE, '../../bench/peers');

interface Launch {
  command: string;
  args: string[];
  /** When the program cannot tell its library's version itself. */
  version?: string;
}

interface Implementation {
  label: string;
  peer: boolean;
  /** What the contenders share: bellwether's singleton name, or the peer recipe's znode path. */
  election(name: string): string;
  /** Checked once: how to start its program (before the common arguments), or why it cannot run here. */
  prepare(scratch: string): Launch | string;
}

/** Runs `command` to see whether it works here; the error's first line if not. */
function works(command: string, args: string[]): string | undefined {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 30_000 });
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

const IMPLEMENTATIONS: Implementation[] = [
  {
    label: 'bellwether singleton({ scope: cluster })',
    peer: false,
    election: (name) => name,
    prepare: () => ({ command: process.execPath, args: [path.join(HERE, 'contenders/handover-bellwether.js')] }),
  },
  {
    label: 'Apache Curator LeaderLatch',
    peer: true,
    election: (name) => `/bench-handover/${name}`,
    prepare: (scratch) => {
      const recipes = findJar('libcurator-recipes-java', 'curator-recipes.jar');
      if (!recipes) return 'curator-recipes.jar not found (libcurator-recipes-java)';
      for (const tool of ['java', 'javac']) {
        const problem = works(tool, ['-version']);
        if (problem) return `${tool} does not run (${problem}); a JDK is needed (apt-get install -y default-jdk-headless)`;
      }
      // The jar's manifest brings curator-framework, curator-client, guava and zookeeper; slf4j-nop silences their logging.
      const classPath = [scratch, recipes, findJar('libslf4j-java', 'slf4j-nop.jar')].filter((p) => p !== undefined).join(path.delimiter);
      try {
        execFileSync('javac', ['-d', scratch, '-cp', classPath, path.join(PEERS, 'LeaderLatchBench.java')], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
      } catch (err) {
        return `javac failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}`;
      }
      // Debian's jar has no Implementation-Version; its versioned file name (the symlink's target) has it.
      const version = /-(\d[\w.]*)\.jar$/.exec(fs.realpathSync(recipes))?.[1];
      return { command: 'java', args: ['-XX:+UseSerialGC', '-Djava.net.preferIPv4Stack=true', '-cp', classPath, 'LeaderLatchBench'], ...(version ? { version } : {}) };
    },
  },
  {
    label: 'kazoo Election',
    peer: true,
    election: (name) => `/bench-handover/${name}`,
    prepare: () => {
      if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
      const problem = works(PYTHON, ['-c', 'import kazoo.recipe.election']);
      if (problem) return `${PYTHON} cannot import kazoo (${problem})`;
      return { command: PYTHON, args: ['-B', path.join(PEERS, 'kazoo_election.py')] };
    },
  },
];

/** What the server has received so far, net of this counter's own four-letter-word reads (each counts one packet). */
interface Mark {
  /** srvr's "Received": every packet, pings included. */
  packets: number;
  /** The sum over client connections of cons's lcxid, the last request xid: clients number their requests 1 by 1, and a ping's xid (-2) is not kept. */
  requests: bigint;
}

/** The server's counters, for requests per failover counted the same way for every client library. */
class ServerCounter {
  #reads = 0;

  constructor(readonly port: number) {}

  async #ask(command: 'srvr' | 'cons'): Promise<string> {
    this.#reads += 1;
    return fourLetterWord(this.port, command, SETTLE_MS);
  }

  async #packets(): Promise<number> {
    const answer = await this.#ask('srvr');
    const received = /^Received: (\d+)$/m.exec(answer)?.[1];
    if (received === undefined) throw new Error(`srvr on port ${this.port} gave no Received line: ${answer}`);
    return Number(received) - this.#reads;
  }

  /** Once the packet count has not moved for QUIET_MS (every client's traffic has settled). */
  async settled(): Promise<Mark> {
    const deadline = performance.now() + SETTLE_MS;
    let last = await this.#packets();
    let since = performance.now();
    while (performance.now() - since < QUIET_MS) {
      if (performance.now() > deadline) throw new Error(`ZooKeeper traffic did not stop for ${QUIET_MS} ms within ${SETTLE_MS} ms`);
      await sleep(POLL_MS);
      const now = await this.#packets();
      if (now !== last) {
        last = now;
        since = performance.now();
      }
    }
    // Sessions' connections only (with a sid): not this read's own.
    const xids = [...(await this.#ask('cons')).matchAll(/sid=0x[0-9a-f]+,.*?lcxid=0x([0-9a-f]+)/g)];
    return { packets: last, requests: xids.reduce((sum, [, xid]) => sum + BigInt.asIntN(64, BigInt(`0x${xid!}`)), 0n) };
  }
}

type Event = { event: string } & Record<string, unknown>;

/** The next JSON line whose event is `name`; throws on an error event, on exit, or after `ms`. */
async function event(child: LineChild, name: string, ms: number): Promise<Event> {
  const deadline = performance.now() + ms;
  const exited = child.exited.then(() => {
    throw new Error(`the program exited (${child.child.exitCode ?? child.child.signalCode}) before printing ${name}`);
  });
  exited.catch(() => undefined);
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`no ${name} within ${ms} ms`);
    const line = await Promise.race([child.line(left), exited]);
    let parsed: Event;
    try {
      parsed = JSON.parse(line) as Event;
    } catch {
      continue; // not the protocol's (a library's own output)
    }
    if (parsed.event === 'error') throw new Error(String(parsed['message']));
    if (parsed.event === name) return parsed;
  }
}

interface Result {
  version: string;
  handover: number[];
  /** Requests the server received per failover, from just before the close until traffic settled (by xid: pings excluded). */
  requests: number[];
  /** Packets the server received over the same window (srvr: pings included). */
  packets: number[];
  /** bellwether only: its own count of requests (zk.operations of all sessions) over the same window. */
  clientOps: number[];
}

/** One implementation's program with `n` contenders over WARMUP + `rounds` rounds. */
async function contend(launch: Launch, connect: string, port: number, n: number, rounds: number, name: string): Promise<Result> {
  const child = new LineChild(launch.command, [...launch.args, connect, String(SESSION_TIMEOUT_MS), String(n), String(WARMUP + rounds), name]);
  child.child.stdin!.on('error', () => {}); // EPIPE once it died
  const send = (command: string): void => void child.child.stdin!.write(`${command}\n`);
  const counter = new ServerCounter(port);
  const result: Result = { version: '', handover: [], requests: [], packets: [], clientOps: [] };
  try {
    result.version = String((await event(child, 'version', START_MS))['version'] || launch.version || '');
    for (let round = 0; round < WARMUP + rounds; round++) {
      await event(child, 'ready', round === 0 ? START_MS : ROUND_MS);
      const before = await counter.settled();
      send('go');
      const { ms } = await event(child, 'handover', ROUND_MS);
      const after = await counter.settled();
      send('next');
      const { ops } = await event(child, 'ops', ROUND_MS);
      if (round < WARMUP) continue;
      result.handover.push(Number(ms));
      result.requests.push(Number(after.requests - before.requests));
      result.packets.push(after.packets - before.packets);
      if (typeof ops === 'number') result.clientOps.push(ops);
    }
    await event(child, 'done', ROUND_MS);
    await bounded(`${launch.command} to exit after its last round`, child.exited, SETTLE_MS);
    return result;
  } finally {
    await child.kill();
  }
}

export async function handover(scale: number): Promise<string> {
  const rounds = Math.max(3, Math.round(20 * scale));
  const sizes = [3, 20];
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-handover-'));
  const notes: string[] = [];
  const rows: (string | number)[][] = [];
  let ensemble: ZkEnsemble | undefined;
  const floors: (string | number)[][] = [];
  try {
    const launches = IMPLEMENTATIONS.map((impl) => {
      const launch = impl.prepare(scratch);
      if (typeof launch === 'string') notes.push(`skipped ${impl.label}: ${launch}. Install the peers with: ${INSTALL}`);
      return launch;
    });
    ensemble = await ZkEnsemble.start({ servers: 1, maxSessionTimeout: SESSION_TIMEOUT_MS });
    const connect = ensemble.connectString();
    const port = ensemble.servers[0]!.clientPort;
    for (const n of sizes) {
      const medians = new Map<Implementation, number>();
      const group: (string | number)[][] = [];
      for (const [i, impl] of IMPLEMENTATIONS.entries()) {
        const launch = launches[i]!;
        if (typeof launch === 'string') continue;
        let r: Result;
        try {
          r = await contend(launch, connect, port, n, rounds, impl.election(`bench-handover-n${n}`));
        } catch (err) {
          notes.push(`${impl.label}, N = ${n}: failed: ${(err as Error).message}`);
          continue;
        }
        const s = summarize(r.handover);
        medians.set(impl, s.median);
        const ops = r.clientOps.length ? String(summarize(r.clientOps).median) : '-';
        group.push([`${impl.label} ${r.version}`, n, s.n, s.min, s.median, s.max, summarize(r.requests).median, summarize(r.packets).median, ops, r.requests.join(' ')]);
      }
      const own = [...medians].find(([impl]) => !impl.peer)?.[1];
      const peers = [...medians].filter(([impl]) => impl.peer).map(([, median]) => median);
      const ratio = own !== undefined && peers.length ? (own / Math.min(...peers)).toFixed(2) : '-';
      rows.push(...group.map((row, i) => [...row, i === 0 ? ratio : '']));
    }
    floors.push(floorRow('node-zookeeper-client', await clientFloor(connect, rounds)));
    const kazoo = kazooFloor(connect, rounds);
    if (typeof kazoo === 'string') notes.push(`no kazoo floor: ${kazoo}`);
    else floors.push(floorRow(`kazoo ${kazoo.version}`, kazoo.ms));
  } finally {
    await ensemble?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return [
    table(
      `Graceful handover, N contenders in one process per implementation, one ZooKeeper on loopback, ${WARMUP} warm-up rounds not counted: ` +
        'the leader closes -> the next contender\'s job starts (ms, timed in that process; min, median and max of the rounds)',
      [
        'implementation',
        'N',
        'rounds',
        'min',
        'median',
        'max',
        'ZK requests per failover (server, median)',
        'packets incl. pings (srvr, median)',
        'zk.operations (median)',
        'ZK requests per failover, all rounds',
        'bellwether median / best peer median',
      ],
      rows,
    ),
    '\nThe leader closes with singleton.close(), LeaderLatch.close(), or by returning from the Election\'s function.' +
      `\nCounted by the server from just before the close until srvr's "Received" stood still for ${QUIET_MS} ms (the four-letter-word reads taken out):` +
      "\nZK requests = the growth of cons's lcxid (each connection's last request xid) summed over the sessions, so pings (xid -2) are not in it;" +
      `\npackets = srvr's "Received", pings included (sessions of ${SESSION_TIMEOUT_MS / 1000} s; ZooKeeper's Java client still pings every 10 s when idle).` +
      "\nzk.operations: bellwether's own count of its requests over the same window, all sessions. Issue 18's goal for the ratio: at most 0.75.",
    ...notes.map((note) => `\n${note}`),
    table(
      "The floor on the same server, each client library alone: one session deletes a node, another session's exists watch on it fires " +
        '(ms, min, median and max of the rounds; idle 100 ms before each, as the contenders). A handover is at least this: the resign is a write, the successor learns of it by this notification',
      ['client library', 'rounds', 'min', 'median', 'max'],
      floors,
    ),
  ].join('\n');
}

function floorRow(client: string, samples: number[]): (string | number)[] {
  const s = summarize(samples);
  return [client, s.n, s.min, s.median, s.max];
}

/** kazoo's floor (bench/peers/kazoo_floor.py), or why it cannot be measured here. */
function kazooFloor(connect: string, rounds: number): { version: string; ms: number[] } | string {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found. Install the peers with: ${INSTALL}`;
  try {
    const out = execFileSync(PYTHON, ['-B', path.join(PEERS, 'kazoo_floor.py'), connect, String(rounds)], { encoding: 'utf8', timeout: START_MS, stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out) as { version: string; ms: number[] };
  } catch (err) {
    return `${(err as Error).message.split('\n')[0]}. Install the peers with: ${INSTALL}`;
  }
}
