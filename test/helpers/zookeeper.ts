/**
 * A real ZooKeeper for tests: one standalone server or a three-server ensemble,
 * each server a java child process on loopback ports with its own temp dir.
 *
 * Needs the Debian packages `zookeeper` (or `libzookeeper-java`), Java and setpriv(1).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { freePorts } from './ports.js';
import { SETPRIV } from './tools.js';

export interface ZkServer {
  readonly id: number;
  readonly clientPort: number;
  readonly dataDir: string;
  /** undefined while stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** (Re)starts with the same config and data dir; resolves once the server serves clients. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after 2 s; resolves when the process exited. */
  stop(): Promise<void>;
  /** SIGKILL; resolves when the process exited. */
  kill(): Promise<void>;
  /** SIGSTOP: the process keeps its sockets but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

export interface ZkEnsembleOptions {
  servers?: 1 | 3;
  tickTime?: number;
  minSessionTimeout?: number;
  maxSessionTimeout?: number;
  /** More zoo.cfg lines (unknown keys become `zookeeper.`-prefixed system properties). */
  config?: string[];
}

const LOOPBACK = '127.0.0.1';
const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 2_000;
const POLL_MS = 20;
/** A serving server answers srvr within milliseconds. */
const SRVR_TRY_MS = 250;
/** `srvr` modes of a server that serves clients. */
const SERVING_MODES = new Set(['leader', 'follower', 'standalone']);

// ---------------------------------------------------------------------------
// The java command line

let classPath: string | undefined;

/** zookeeper.jar (its manifest Class-Path brings the other jars) plus an slf4j backend. */
function zkClassPath(): string {
  if (classPath === undefined) {
    const zookeeperJar = findJar('libzookeeper-java', 'zookeeper.jar');
    if (zookeeperJar === undefined) {
      throw new Error('zookeeper.jar not found: install ZooKeeper (apt-get install zookeeper)');
    }
    // The manifest lists slf4j-api but no backend; without one ZooKeeper logs nothing at all.
    // slf4j-simple logs to stderr, which goes to the server's log file.
    const slf4jSimple = findJar('libslf4j-java', 'slf4j-simple.jar');
    classPath = [zookeeperJar, ...(slf4jSimple === undefined ? [] : [slf4jSimple])].join(path.delimiter);
  }
  return classPath;
}

/** A jar of a Debian package, as dpkg lists it; /usr/share/java as the fallback. */
export function findJar(debianPackage: string, name: string): string | undefined {
  let listed: string[] = [];
  try {
    listed = execFileSync('dpkg', ['-L', debianPackage], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n');
  } catch {
    // Not installed, or no dpkg: try the usual place.
  }
  return [...listed, path.join('/usr/share/java', name)].find((file) => file.endsWith(`/${name}`) && fs.existsSync(file));
}

const JVM_ARGS = [
  // Small, quick-starting JVMs: up to three of them share a 2-core CI machine.
  '-Xms32m',
  '-Xmx256m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-XX:-UsePerfData',
  '-Djava.net.preferIPv4Stack=true',
  // No fsync per transaction: the data survives a killed process, just not a machine crash.
  '-Dzookeeper.forceSync=no',
  '-Dorg.slf4j.simpleLogger.showDateTime=true',
  '-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS',
];

// ---------------------------------------------------------------------------
// No java process may outlive the test process, however it ends.

const liveChildren = new Set<ChildProcess>();
const liveRoots = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work runs on 'exit': kill(2) and rmSync are. If this process is
  // SIGKILLed instead, setpriv's parent-death signal kills java (the temp dirs stay).
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    for (const root of liveRoots) fs.rmSync(root, { recursive: true, force: true });
  });
}

// ---------------------------------------------------------------------------
// One server

interface ServerSetup {
  id: number;
  clientPort: number;
  dir: string;
  mainClass: string;
  config: string;
}

class ServerProcess implements ZkServer {
  readonly id: number;
  readonly clientPort: number;
  readonly dataDir: string;
  readonly #configFile: string;
  readonly #logFile: string;
  readonly #mainClass: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #paused = false;

  constructor(setup: ServerSetup) {
    this.id = setup.id;
    this.clientPort = setup.clientPort;
    this.dataDir = path.join(setup.dir, 'data');
    this.#configFile = path.join(setup.dir, 'zoo.cfg');
    this.#logFile = path.join(setup.dir, 'zookeeper.log');
    this.#mainClass = setup.mainClass;
    fs.mkdirSync(this.dataDir, { recursive: true });
    fs.writeFileSync(this.#configFile, setup.config);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  async start(): Promise<void> {
    if (this.#child) throw new Error(`ZooKeeper server ${this.id} is already running (pid ${this.pid})`);
    // One log across restarts; a marker shows where each run begins.
    fs.appendFileSync(this.#logFile, `\n===== harness: starting server ${this.id} at ${new Date().toISOString()} =====\n`);
    const log = fs.openSync(this.#logFile, 'a');
    let child: ChildProcess;
    try {
      // setpriv execs java in place (same pid) and has the kernel SIGKILL it when this process dies.
      child = spawn(SETPRIV, ['--pdeathsig', 'KILL', 'java', ...JVM_ARGS, '-cp', zkClassPath(), this.#mainClass, this.#configFile], {
        stdio: ['ignore', log, log],
      });
    } finally {
      fs.closeSync(log); // the child has its own copy
    }
    this.#child = child;
    installExitHook();
    liveChildren.add(child);
    let spawnError: Error | undefined;
    this.#exited = new Promise((resolve) => {
      const exited = (): void => {
        liveChildren.delete(child);
        if (this.#child === child) {
          this.#child = undefined;
          this.#paused = false;
        }
        resolve();
      };
      child.once('exit', exited);
      child.once('error', (error) => {
        spawnError = error;
        exited();
      });
    });

    // A client that connects before the server is up can hang forever: wait until srvr says it serves.
    // srvr itself can hang when it connects the moment the port opens, hence the short timeout per try.
    const deadline = Date.now() + START_TIMEOUT_MS;
    let lastAnswer = 'no answer';
    for (;;) {
      if (this.#child !== child) {
        throw this.#startError(`exited before serving${spawnError ? ` (${spawnError.message})` : ''}`);
      }
      try {
        const answer = await fourLetterWord(this.clientPort, 'srvr', SRVR_TRY_MS);
        lastAnswer = answer.trim().split('\n')[0] ?? '';
        const mode = parseMode(answer);
        if (mode !== undefined && SERVING_MODES.has(mode)) return;
      } catch (error) {
        lastAnswer = (error as Error).message; // not listening yet
      }
      if (Date.now() >= deadline) {
        await this.kill();
        throw this.#startError(`not serving after ${START_TIMEOUT_MS} ms (last srvr: ${lastAnswer})`);
      }
      await Promise.race([delay(POLL_MS), this.#exited]);
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    child.kill('SIGTERM');
    if (this.#paused) child.kill('SIGCONT'); // a stopped process acts on SIGTERM only once continued
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  pause(): void {
    this.#running('pause').kill('SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    this.#running('resume').kill('SIGCONT');
    this.#paused = false;
  }

  #running(action: string): ChildProcess {
    if (!this.#child) throw new Error(`cannot ${action} ZooKeeper server ${this.id}: it is not running`);
    return this.#child;
  }

  #startError(problem: string): Error {
    let tail: string;
    try {
      tail = fs.readFileSync(this.#logFile, 'utf8').slice(-4_000);
    } catch (error) {
      tail = `(no log: ${(error as Error).message})`;
    }
    return new Error(`ZooKeeper server ${this.id} (port ${this.clientPort}) ${problem}; log ${this.#logFile} ends with:\n${tail}`);
  }
}

// ---------------------------------------------------------------------------
// The ensemble

export class ZkEnsemble {
  readonly servers: readonly ZkServer[];
  readonly #root: string;
  #closed: Promise<void> | undefined;

  private constructor(root: string, servers: ZkServer[]) {
    this.#root = root;
    this.servers = servers;
  }

  /** Resolves when every server serves clients (in an ensemble: is leader or follower). */
  static async start(options: ZkEnsembleOptions = {}): Promise<ZkEnsemble> {
    const count = options.servers ?? 1;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-zk-'));
    installExitHook();
    liveRoots.add(root);
    const servers: ServerProcess[] = [];
    const ensemble = new ZkEnsemble(root, servers);
    try {
      const ports = await freePorts(count * 3, LOOPBACK);
      const port = (i: number): number => ports[i]!;
      const common = [
        `tickTime=${options.tickTime ?? 50}`,
        `minSessionTimeout=${options.minSessionTimeout ?? 100}`,
        `maxSessionTimeout=${options.maxSessionTimeout ?? 60_000}`,
        'initLimit=20',
        'syncLimit=10',
        `clientPortAddress=${LOOPBACK}`,
        '4lw.commands.whitelist=*',
        'admin.enableServer=false', // else it binds port 8080
        ...(options.config ?? []),
      ];
      // server.N=host:peerPort:electionPort, only in an ensemble.
      const peers = count === 1 ? [] : Array.from({ length: count }, (_, i) => `server.${i + 1}=${LOOPBACK}:${port(count + 2 * i)}:${port(count + 2 * i + 1)}`);
      for (let i = 0; i < count; i++) {
        const id = i + 1;
        const dir = path.join(root, `server-${id}`);
        const dataDir = path.join(dir, 'data');
        servers.push(
          new ServerProcess({
            id,
            clientPort: port(i),
            dir,
            mainClass: count === 1 ? 'org.apache.zookeeper.server.ZooKeeperServerMain' : 'org.apache.zookeeper.server.quorum.QuorumPeerMain',
            config: [...common, `dataDir=${dataDir}`, `clientPort=${port(i)}`, ...peers, ''].join('\n'),
          }),
        );
        if (count > 1) fs.writeFileSync(path.join(dataDir, 'myid'), `${id}\n`);
      }
      await Promise.all(servers.map((s) => s.start()));
      return ensemble;
    } catch (error) {
      await ensemble.close();
      throw error;
    }
  }

  /** '127.0.0.1:p1,127.0.0.1:p2,...' plus the optional chroot ('/path'). */
  connectString(chroot = ''): string {
    if (chroot !== '' && !chroot.startsWith('/')) throw new Error(`chroot must start with '/': ${chroot}`);
    return this.servers.map((s) => `${LOOPBACK}:${s.clientPort}`).join(',') + chroot;
  }

  /** The running server whose srvr says leader (or standalone); waits through an election. */
  async leader(timeoutMs = START_TIMEOUT_MS): Promise<ZkServer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const modes = await Promise.all(
        this.servers.map(async (s) => (s.running ? parseMode(await fourLetterWord(s.clientPort, 'srvr', SRVR_TRY_MS).catch(() => '')) : 'stopped')),
      );
      const leaders = this.servers.filter((_, i) => modes[i] === 'leader' || modes[i] === 'standalone');
      if (leaders.length === 1) return leaders[0]!;
      if (Date.now() >= deadline) {
        throw new Error(`no single leader after ${timeoutMs} ms; modes: ${this.servers.map((s, i) => `${s.id}=${modes[i] ?? 'none'}`).join(' ')}`);
      }
      await delay(POLL_MS);
    }
  }

  /** Kills every server and removes the temp dirs; idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await Promise.all(this.servers.map((s) => s.kill()));
      fs.rmSync(this.#root, { recursive: true, force: true });
      liveRoots.delete(this.#root);
    })();
    return this.#closed;
  }
}

/** The Mode line of a srvr answer: leader, follower, standalone, ... */
function parseMode(srvr: string): string | undefined {
  return /^Mode: (\S+)/m.exec(srvr)?.[1];
}

// ---------------------------------------------------------------------------
// Talking to a server directly

/** Sends a four-letter command (srvr, stat, mntr, ...) and resolves with the answer. */
export function fourLetterWord(port: number, command: string, timeoutMs = 2_000): Promise<string> {
  if (!/^[a-z]{4}$/.test(command)) throw new Error(`not a four-letter word: ${command}`);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port });
    const chunks: Buffer[] = [];
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(() => finish(new Error(`${command} to ${LOOPBACK}:${port}: no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(command));
    socket.on('data', (chunk) => chunks.push(chunk));
    // The server closes the connection after its answer.
    socket.on('end', () => finish());
    socket.on('error', (error) => finish(error));
  });
}

/** The 8-byte session id ZooKeeper's wire protocol wants, from ZkSession's hex form. */
export function idBuffer(hex: string): Buffer {
  return Buffer.from(hex.padStart(16, '0'), 'hex');
}

/**
 * Expires a session from outside, as if its client had vanished: joins the session on a raw
 * connection and closes it. Its ephemeral nodes are gone once this resolves, and its client
 * gets SESSION_EXPIRED when it reconnects. (A second node-zookeeper-client with the same
 * session id and password would not do: it does not close the session.)
 */
export async function expireSession(port: number, sessionId: Buffer, password: Buffer, timeoutMs = 5_000): Promise<void> {
  if (sessionId.length !== 8) throw new Error(`a session id has 8 bytes, not ${sessionId.length}`);
  const session = `0x${sessionId.toString('hex')}`;
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`expiring session ${session} on port ${port}: not done within ${timeoutMs} ms`);
    const outcome = await closeSessionOnce(port, sessionId, password, remaining);
    if (outcome === 'closed') return;
    if (outcome === 'refused') {
      // On a retry, a refused session is the one the previous attempt closed.
      if (attempt > 1) return;
      throw new Error(`session ${session} is not valid on port ${port} (already expired, or wrong password)`);
    }
    // 'dropped': the connection closed before the CloseSession reply, e.g. because the session's
    // own client reconnected and took the session over. Try again.
  }
}

/** One raw connection: ConnectRequest for the session, then CloseSession. */
function closeSessionOnce(port: number, sessionId: Buffer, password: Buffer, timeoutMs: number): Promise<'closed' | 'refused' | 'dropped'> {
  // ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd (length-prefixed), readOnly.
  const connect = Buffer.alloc(4 + 8 + 4 + 8 + 4 + password.length + 1);
  let offset = connect.writeInt32BE(0, 0);
  offset = connect.writeBigInt64BE(0n, offset);
  offset = connect.writeInt32BE(30_000, offset);
  offset += sessionId.copy(connect, offset);
  offset = connect.writeInt32BE(password.length, offset);
  offset += password.copy(connect, offset);
  connect.writeUInt8(0, offset);
  // Request header of CloseSession: xid, type -11; no body.
  const closeSession = Buffer.alloc(8);
  closeSession.writeInt32BE(1, 0);
  closeSession.writeInt32BE(-11, 4);

  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port });
    let received = Buffer.alloc(0);
    let connected = false;
    const finish = (outcome: 'closed' | 'refused' | 'dropped' | Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const timer = setTimeout(() => finish(new Error(`expiring a session on port ${port}: no answer within ${timeoutMs} ms`)), timeoutMs);
    // Both at once: the server reads CloseSession only after it attached the session to this
    // connection, and so closes it before the session's own client can reconnect and take it back.
    socket.on('connect', () => socket.write(Buffer.concat([frame(connect), frame(closeSession)])));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      // Every message is framed by an int32 length.
      while (received.length >= 4 && received.length >= 4 + received.readInt32BE(0)) {
        const message = received.subarray(4, 4 + received.readInt32BE(0));
        received = received.subarray(4 + message.length);
        if (!connected) {
          // ConnectResponse: protocolVersion, timeOut, sessionId, ... A timeOut of 0: no such session.
          if (message.length < 8 || message.readInt32BE(4) <= 0) return finish('refused');
          connected = true;
        } else {
          // ReplyHeader: xid, zxid, err.
          const err = message.length >= 16 ? message.readInt32BE(12) : undefined;
          return finish(err === 0 ? 'closed' : new Error(`closing a session on port ${port} failed: error ${err ?? 'in an unreadable reply'}`));
        }
      }
    });
    socket.on('close', () => finish('dropped'));
    socket.on('error', (error) => finish(error));
  });
}

function frame(body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length, 0);
  return Buffer.concat([length, body]);
}

// ---------------------------------------------------------------------------
// node:test

/** Starts an ensemble in before() and closes it in after(); `ensemble` throws until it started. */
export function useZooKeeper(options: ZkEnsembleOptions = {}): { readonly ensemble: ZkEnsemble } {
  let ensemble: ZkEnsemble | undefined;
  before(async () => {
    ensemble = await ZkEnsemble.start(options);
  });
  after(async () => {
    await ensemble?.close();
  });
  return {
    get ensemble(): ZkEnsemble {
      if (!ensemble) throw new Error('the ZooKeeper ensemble is not started yet: use it inside a test or a later hook');
      return ensemble;
    },
  };
}
