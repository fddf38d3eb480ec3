/**
 * The chaos run: fleet-singleton contenders (Node and Bun; `cluster` and
 * `host+cluster`) under a random, seeded schedule of faults, each contender
 * reaching ZooKeeper through a proxy of its own. Checks:
 * - safety: never two runs at once, tokens strictly increasing (the shared fence log);
 * - liveness: once the faults end, within the session timeout and a bound,
 *   exactly one contender runs and leader_ack names it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ZkSession } from 'bellwether';
import { type Fixture, Fixtures, startFixture } from '../helpers/child.js';
import { checkFenceLog } from '../helpers/fence-log.js';
import { type Runtime, bun, fixture, node } from '../helpers/runtimes.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { ZkEnsemble, expireSession, idBuffer } from '../helpers/zookeeper.js';

export interface ChaosOptions {
  /** How long faults are injected, ms. */
  faultMs: number;
  seed: number;
  sessionMs?: number;
  /** Progress lines (the long run prints them). */
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  faults: Record<string, number>;
  /** Terms started (the fence log's starts). */
  terms: number;
  /** From the end of the faults until exactly one ran and leader_ack named it, ms. */
  recoveryMs: number;
}

/** mulberry32: small, seeded, good enough to pick faults reproducibly. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CONTENDER = fixture('cluster-contender');
const RECOVERY_BOUND_MS = 5000;

interface Slot {
  runtime: Runtime;
  scope: 'cluster' | 'host+cluster';
  lockDir: string | undefined;
  proxy: TcpProxy;
  fixture: Fixture;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const sessionMs = options.sessionMs ?? 1000;
  const log = options.log ?? (() => {});
  const next = random(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-chaos-'));
  const hostDir = path.join(dir, 'host-a');
  fs.mkdirSync(hostDir, { mode: 0o700 });
  const logFile = path.join(dir, 'fence.log');
  const ensemble = await ZkEnsemble.start();
  const fixtures = new Fixtures();
  const proxies: TcpProxy[] = [];
  const faults: Record<string, number> = {};
  const count = (kind: string): void => void (faults[kind] = (faults[kind] ?? 0) + 1);
  try {
    const [server] = ensemble.servers;
    const spawn = async (slot: Omit<Slot, 'fixture' | 'proxy'> & { proxy?: TcpProxy }): Promise<Slot> => {
      const proxy = slot.proxy ?? new TcpProxy(server!.clientPort);
      if (!slot.proxy) {
        await proxy.start();
        proxies.push(proxy);
      }
      const args = [`127.0.0.1:${proxy.port}`, slot.scope, logFile, String(sessionMs), ...(slot.lockDir ? [slot.lockDir] : [])];
      const f = fixtures.add(startFixture(slot.runtime, CONTENDER, args));
      return { ...slot, proxy, fixture: f };
    };
    const slots: Slot[] = [];
    for (const [runtime, scope] of [
      [node, 'cluster'],
      [bun, 'cluster'],
      [node, 'host+cluster'],
      [bun, 'host+cluster'],
    ] as const) {
      slots.push(await spawn({ runtime, scope, lockDir: scope === 'host+cluster' ? hostDir : undefined }));
    }
    await Promise.all(slots.map((s) => s.fixture.next('contending')));
    const running = (s: Slot): boolean => s.fixture.count('running') > s.fixture.count('stopped');
    const until = Date.now() + options.faultMs;
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    while (Date.now() < until) {
      await sleep(200 + next() * 800);
      const slot = pick(slots);
      const kind = pick(['drop', 'blackhole', 'server-pause', 'expire-follower', 'kill']);
      count(kind);
      log(`fault ${kind} on ${slot.fixture.label} (pid ${slot.fixture.pid})`);
      if (kind === 'drop') slot.proxy.drop();
      else if (kind === 'blackhole') {
        slot.proxy.mode = 'blackhole';
        await sleep(200 + next() * 1.6 * sessionMs);
        slot.proxy.mode = 'pass';
      } else if (kind === 'server-pause') {
        server!.pause();
        await sleep(100 + next() * 0.6 * sessionMs);
        server!.resume();
      } else if (kind === 'expire-follower') {
        // An instant expiry gives a leader no time to step down (nothing real does that): followers only.
        const session = slot.fixture.events.findLast((e) => e.event === 'session');
        if (!running(slot) && session) {
          await expireSession(server!.clientPort, idBuffer(String(session['sessionId'])), Buffer.from(String(session['password']), 'hex')).catch(() => undefined);
        }
      } else {
        await slot.fixture.kill('SIGKILL');
        const replaced = await spawn({ runtime: slot.runtime, scope: slot.scope, lockDir: slot.lockDir, proxy: slot.proxy });
        slots[slots.indexOf(slot)] = replaced;
        await replaced.fixture.next('contending');
      }
    }
    // Faults over: every proxy passes, the server runs.
    for (const proxy of proxies) proxy.mode = 'pass';
    server!.resume();
    const ended = performance.now();
    const observer = new ZkSession({ connect: ensemble.connectString(), sessionTimeout: sessionMs });
    await observer.start();
    let recoveryMs = -1;
    try {
      const deadline = ended + sessionMs + RECOVERY_BOUND_MS;
      for (;;) {
        const runners = slots.filter(running);
        const ack = await observer.get('/_zkelection/fleet-job/leader_ack').then(
          (node) => node.data.toString(),
          () => undefined,
        );
        if (runners.length === 1 && ack === String(runners[0]!.fixture.pid)) {
          recoveryMs = performance.now() - ended;
          break;
        }
        if (performance.now() > deadline) {
          throw new Error(
            `liveness (seed ${options.seed}): ${runners.length} runners and leader_ack ${ack ?? 'absent'} ${Math.round(performance.now() - ended)} ms after the faults ended\n` +
              slots.map((s) => `${s.fixture.label} (pid ${s.fixture.pid}): ${s.fixture.events.slice(-6).map((e) => JSON.stringify(e)).join(' ')}`).join('\n'),
          );
        }
        await sleep(20);
      }
    } finally {
      await observer.close();
    }
    let terms: number;
    try {
      terms = checkFenceLog(logFile).length;
    } catch (err) {
      throw new Error(`safety (seed ${options.seed}): ${(err as Error).message}`);
    }
    return { seed: options.seed, faults, terms, recoveryMs: Math.round(recoveryMs) };
  } finally {
    await fixtures.killAll();
    await Promise.all(proxies.map((p) => p.close()));
    await ensemble.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
