/**
 * The chaos run: fleet-singleton contenders (Node and Bun, or only Node when
 * BW_TEST_RUNTIMES leaves Bun out; `cluster` and `host+cluster`) under a
 * random, seeded schedule of faults, each contender reaching ZooKeeper
 * through proxies of its own (one per server), and two observers (one
 * behind faulty proxies too, one direct). Checks:
 * - safety: never two runs at once, tokens strictly increasing (the shared fence log);
 * - liveness: once the faults end, within the session timeout and a bound,
 *   exactly one contender runs, leader_ack names it, and every observer agrees.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Observer, ZkSession } from 'bellwether';
import { type Fixture, Fixtures, startFixture } from '../helpers/child.js';
import { checkFenceLog } from '../helpers/fence-log.js';
import { type Runtime, bun, fixture, node, selected } from '../helpers/runtimes.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { ZkEnsemble, expireSession, idBuffer } from '../helpers/zookeeper.js';

export interface ChaosOptions {
  /** How long faults are injected, ms. */
  faultMs: number;
  seed: number;
  sessionMs?: number;
  /** 1 (default) or an ensemble of 3, whose members are also killed and paused. */
  servers?: 1 | 3;
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

/** A client's way to the ensemble: one proxy per server, faulted together. */
class Route {
  readonly proxies: TcpProxy[];
  constructor(proxies: TcpProxy[]) {
    this.proxies = proxies;
  }
  get connect(): string {
    return this.proxies.map((p) => `127.0.0.1:${p.port}`).join(',');
  }
  drop(): void {
    for (const p of this.proxies) p.drop();
  }
  set mode(mode: 'pass' | 'blackhole') {
    for (const p of this.proxies) p.mode = mode;
  }
  set delayMs(ms: number) {
    for (const p of this.proxies) p.delayMs = ms;
  }
}

interface Slot {
  runtime: Runtime;
  scope: 'cluster' | 'host+cluster';
  lockDir: string | undefined;
  route: Route;
  fixture: Fixture;
}

const ELECTION = 'fleet-job';

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const sessionMs = options.sessionMs ?? 1000;
  const log = options.log ?? (() => {});
  const next = random(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-chaos-'));
  const hostDir = path.join(dir, 'host-a');
  fs.mkdirSync(hostDir, { mode: 0o700 });
  const logFile = path.join(dir, 'fence.log');
  const ensemble = await ZkEnsemble.start({ servers: options.servers ?? 1 });
  const fixtures = new Fixtures();
  const proxies: TcpProxy[] = [];
  const sessions: ZkSession[] = [];
  const faults: Record<string, number> = {};
  const count = (kind: string): void => void (faults[kind] = (faults[kind] ?? 0) + 1);
  try {
    const { servers } = ensemble;
    const newRoute = async (): Promise<Route> => {
      const route = new Route(servers.map((server) => new TcpProxy(server.clientPort)));
      await Promise.all(route.proxies.map((p) => p.start()));
      proxies.push(...route.proxies);
      return route;
    };
    const spawn = async (slot: Omit<Slot, 'fixture' | 'route'> & { route?: Route }): Promise<Slot> => {
      const route = slot.route ?? (await newRoute());
      const args = [route.connect, slot.scope, logFile, String(sessionMs), ...(slot.lockDir ? [slot.lockDir] : [])];
      const f = fixtures.add(startFixture(slot.runtime, CONTENDER, args));
      return { ...slot, route, fixture: f };
    };
    // Observers: one behind faulty proxies of its own, one direct. Both must name the runner in the end.
    const observerErrors: string[] = [];
    const observe = async (connect: string): Promise<Observer> => {
      const zk = new ZkSession({ connect, sessionTimeout: sessionMs });
      sessions.push(zk);
      await zk.start();
      const observer = new Observer(zk, ELECTION);
      observer.on('error', (err) => void observerErrors.push(`${err.code}: ${err.message}`));
      await observer.observe();
      return observer;
    };
    const observerRoute = await newRoute();
    const observers = [await observe(observerRoute.connect), await observe(ensemble.connectString())];
    const slots: Slot[] = [];
    for (const [runtime, scope] of [
      [node, 'cluster'],
      [bun, 'cluster'],
      [node, 'host+cluster'],
      [bun, 'host+cluster'],
    ] as const) {
      slots.push(await spawn({ runtime: selected(runtime), scope, lockDir: scope === 'host+cluster' ? hostDir : undefined }));
    }
    await Promise.all(slots.map((s) => s.fixture.next('contending')));
    const running = (s: Slot): boolean => s.fixture.count('running') > s.fixture.count('stopped');
    const until = Date.now() + options.faultMs;
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    const kinds = ['drop', 'blackhole', 'delay', 'server-pause', 'expire-follower', 'kill', ...(servers.length > 1 ? ['kill-member'] : [])];
    while (Date.now() < until) {
      await sleep(200 + next() * 800);
      const kind = pick(kinds);
      count(kind);
      // Network faults hit the faulty observer's route now and then too.
      const slot = pick(slots);
      const route = ['drop', 'blackhole', 'delay'].includes(kind) && next() < 0.2 ? observerRoute : slot.route;
      const member = pick(servers);
      log(`fault ${kind} on ${route === observerRoute ? 'the observer' : `${slot.fixture.label} (pid ${slot.fixture.pid})`}${kind.includes('member') || kind === 'server-pause' ? ` / server ${member.id}` : ''}`);
      if (kind === 'drop') route.drop();
      else if (kind === 'blackhole') {
        route.mode = 'blackhole';
        await sleep(200 + next() * 1.6 * sessionMs);
        route.mode = 'pass';
      } else if (kind === 'delay') {
        // Slow, not silent: below the step-down deadline it is latency; above, silence.
        route.delayMs = Math.round(20 + next() * 0.8 * sessionMs);
        await sleep(200 + next() * 1.6 * sessionMs);
        route.delayMs = 0;
      } else if (kind === 'server-pause') {
        member.pause();
        await sleep(100 + next() * 0.6 * sessionMs);
        member.resume();
      } else if (kind === 'kill-member') {
        // One member at a time: the other two keep the quorum.
        await member.kill();
        await sleep(200 + next() * 1.5 * sessionMs);
        await member.start();
      } else if (kind === 'expire-follower') {
        // An instant expiry gives a leader no time to step down (nothing real does that): followers only.
        const session = slot.fixture.events.findLast((e) => e.event === 'session');
        if (!running(slot) && session) {
          const port = servers.find((s) => s.running)!.clientPort;
          await expireSession(port, idBuffer(String(session['sessionId'])), Buffer.from(String(session['password']), 'hex')).catch(() => undefined);
        }
      } else {
        await slot.fixture.kill('SIGKILL');
        const replaced = await spawn({ runtime: slot.runtime, scope: slot.scope, lockDir: slot.lockDir, route: slot.route });
        slots[slots.indexOf(slot)] = replaced;
        await replaced.fixture.next('contending');
      }
    }
    // Faults over: every proxy passes at once, every server runs.
    for (const proxy of proxies) {
      proxy.mode = 'pass';
      proxy.delayMs = 0;
    }
    const ended = performance.now();
    let recoveryMs = -1;
    const deadline = ended + sessionMs + RECOVERY_BOUND_MS;
    for (;;) {
      const runners = slots.filter(running);
      const ack = await sessions[1]!.get(`/_zkelection/${ELECTION}/leader_ack`).then(
        (node) => node.data.toString(),
        () => undefined,
      );
      const seen = observers.map((o) => o.leaderData?.toString());
      if (runners.length === 1 && ack === String(runners[0]!.fixture.pid) && seen.every((data) => data === ack)) {
        recoveryMs = performance.now() - ended;
        break;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `liveness (seed ${options.seed}): ${runners.length} runners, leader_ack ${ack ?? 'absent'}, observers ${JSON.stringify(seen)}, ${Math.round(performance.now() - ended)} ms after the faults ended\n` +
            slots.map((s) => `${s.fixture.label} (pid ${s.fixture.pid}): ${s.fixture.events.slice(-6).map((e) => JSON.stringify(e)).join(' ')}`).join('\n'),
        );
      }
      await sleep(20);
    }
    if (observerErrors.length > 0) throw new Error(`observers reported errors (seed ${options.seed}): ${observerErrors.join('; ')}`);
    let terms: number;
    try {
      terms = checkFenceLog(logFile).length;
    } catch (err) {
      throw new Error(`safety (seed ${options.seed}): ${(err as Error).message}`);
    }
    return { seed: options.seed, faults, terms, recoveryMs: Math.round(recoveryMs) };
  } finally {
    await fixtures.killAll();
    await Promise.all(sessions.map((zk) => zk.close()));
    await Promise.all(proxies.map((p) => p.close()));
    await ensemble.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
