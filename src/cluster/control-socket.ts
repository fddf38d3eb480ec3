import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { defaultLockDir, errnoOf, prepareLockDir } from '../lock/lock-dir.js';
import type { SlotInfo } from './slot.js';

/** What a control connection is answered with. */
export interface ControlStatus {
  workers: SlotInfo[];
  rollout?: { state: string; slot?: number; reason?: string } | undefined;
}

/** The status line as read by `bellwether status`. */
export interface StatusReport extends ControlStatus {
  pid: number;
  name: string;
}

/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;
/** A client that neither reads nor closes is cut off after this. */
const CONNECTION_DEADLINE_MS = 2000;

/** Where `bellwether status --name N` finds supervisor N by default: the per-user lock directory. */
export function defaultControlSocket(name: string): string {
  return path.join(defaultLockDir(), `supervisor-${name}.sock`);
}

/** The socket path for a supervisor, checked before anything starts (a longer path would be truncated by the kernel). */
export function controlSocketPath(name: string, explicit: string | undefined): string {
  return checkPathLength(path.resolve(explicit ?? defaultControlSocket(name)));
}

function checkPathLength(socketPath: string): string {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new BellwetherError(
      ErrorCodes.CONTROL_SOCKET_UNSAFE,
      `control socket path ${socketPath} is ${bytes} bytes; a Unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}: choose a shorter supervisor name or --socket`,
    );
  }
  return socketPath;
}

/** A failed lstat or connect on the socket: a permission problem, or a path we cannot use. */
function socketPathError(doing: string, socketPath: string, err: unknown, hint = ''): BellwetherError {
  const errno = errnoOf(err);
  if (errno === 'EACCES' || errno === 'EPERM') {
    return new BellwetherError(ErrorCodes.CONTROL_SOCKET_ACCESS, `no permission to ${doing} ${socketPath} (${errno})${hint}`, { cause: err });
  }
  return new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `cannot ${doing} ${socketPath}: ${String(err)}`, { cause: err });
}

/**
 * A unix socket (0600, in a directory only this user can write) that answers
 * every connection with the supervisor's status as one JSON line.
 */
export class ControlSocket {
  readonly path: string;
  readonly #name: string;
  readonly #server: net.Server;
  readonly #explicit: boolean;
  readonly #connections = new Set<net.Socket>();
  /** The file we created at `path` (device and inode): only that is ever removed. */
  #created: { dev: number; ino: number } | undefined;

  constructor(name: string, socketPath: string | undefined, status: () => ControlStatus) {
    this.#name = name;
    this.#explicit = socketPath !== undefined;
    this.path = controlSocketPath(name, socketPath);
    this.#server = net.createServer((connection) => {
      this.#connections.add(connection);
      // A client that resets (ECONNRESET) must not crash the primary; one that
      // never reads must not hold stop() up.
      connection.on('error', () => connection.destroy());
      connection.on('close', () => this.#connections.delete(connection));
      connection.setTimeout(CONNECTION_DEADLINE_MS, () => connection.destroy());
      connection.end(`${JSON.stringify({ pid: process.pid, name, ...status() })}\n`);
    });
    this.#server.unref();
  }

  async listen(): Promise<void> {
    const dir = prepareLockDir(path.dirname(this.path), !this.#explicit, this.#explicit ? 'control socket directory' : 'lock directory');
    await this.#clearStale();
    // Bound in a private directory (0700) and chmod'ed there, then linked into
    // place: the socket is never reachable with another mode, and the process
    // umask is never touched (other code of the primary creates files too).
    // link(2), unlike rename(2), never replaces what another process put there.
    const privateDir = fs.mkdtempSync(path.join(dir, '.bw-control-'));
    const bound = path.join(privateDir, 's');
    try {
      await new Promise<void>((resolve, reject) => {
        // Closed before it listened (a stop during start): never 'listening'.
        const closed = (): void => reject(new BellwetherError(ErrorCodes.CLOSED, 'the control socket was closed while it started'));
        this.#server.once('error', reject);
        this.#server.once('close', closed);
        this.#server.listen(bound, () => {
          this.#server.off('error', reject);
          this.#server.off('close', closed);
          resolve();
        });
      });
      fs.chmodSync(bound, 0o600);
      try {
        fs.linkSync(bound, this.path);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        throw new BellwetherError(ErrorCodes.ALREADY_RUNNING, `${this.path} appeared while this supervisor started: another one of the same name is starting`, { cause: err });
      }
      const { dev, ino } = fs.lstatSync(this.path);
      this.#created = { dev, ino };
    } catch (err) {
      await this.#closeServer();
      throw err;
    } finally {
      fs.rmSync(privateDir, { recursive: true, force: true });
    }
  }

  /** A socket left by a primary that died is removed; anything else at the path is refused, never removed. */
  async #clearStale(): Promise<void> {
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(this.path);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw socketPathError('check control socket path', this.path, err);
    }
    if (!stat.isSocket()) {
      throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `${this.path} exists and is not a socket; it is left alone: choose another --socket or --name`);
    }
    const listener = await probe(this.path);
    if (typeof listener === 'number') {
      throw new BellwetherError(
        ErrorCodes.ALREADY_RUNNING,
        `supervisor ${this.#name} (pid ${listener}) is already running with control socket ${this.path}: stop it first, or give this one another --name`,
      );
    }
    if (listener === 'other') {
      throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `something listens on ${this.path} (not a bellwether supervisor, or a busy one); it is left alone: choose another --socket or --name`);
    }
    // Refused: nobody listens, a socket left by a primary that died.
    fs.unlinkSync(this.path);
  }

  async close(): Promise<void> {
    for (const connection of this.#connections) connection.destroy();
    await this.#closeServer();
    // Only the socket we created: whatever replaced it since stays.
    try {
      const stat = fs.lstatSync(this.path);
      if (stat.isSocket() && stat.dev === this.#created?.dev && stat.ino === this.#created.ino) fs.unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  #closeServer(): Promise<void> {
    return new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * Reads one status line from a control socket, after checking that the
 * socket and its directory belong to this user: a socket planted by someone
 * else could report fake pids that an operator would then kill. `name` is
 * the supervisor's, when the path is its default one: messages then speak
 * of it by name. Every failure is a BellwetherError that says what to do.
 */
export async function readStatus(socketPath: string, options: { name?: string | undefined; timeoutMs?: number } = {}): Promise<StatusReport> {
  const { name, timeoutMs = 2000 } = options;
  const absolute = checkPathLength(path.resolve(socketPath));
  const notRunning = (why: string, cause?: unknown): BellwetherError =>
    new BellwetherError(ErrorCodes.NOT_RUNNING, `no supervisor ${name === undefined ? `is running on ${absolute}` : `named ${name} is running`}: ${why}`, { cause });
  const startOne = `start one with: bellwether start <entry.js>${name === undefined ? ` --socket ${absolute}` : name === 'default' ? '' : ` --name ${name}`}`;
  const asOwner = ': run bellwether status as the user that started the supervisor';
  const dir = path.dirname(absolute);
  try {
    prepareLockDir(dir, false, 'control socket directory');
  } catch (err) {
    const code = err instanceof BellwetherError ? err.code : undefined;
    if (code === ErrorCodes.LOCK_DIR_MISSING) throw notRunning(`directory ${dir} does not exist; ${startOne}`, err);
    if (code === ErrorCodes.LOCK_DIR_NOT_DIRECTORY) throw notRunning(`${dir} is not a directory`, err);
    if (code === ErrorCodes.LOCK_ACCESS) throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_ACCESS, `no permission to use control socket directory ${dir}${asOwner}`, { cause: err });
    throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `control socket directory ${dir} is not safe: ${(err as Error).message}`, { cause: err });
  }
  const missing = (err: unknown): BellwetherError => notRunning(`${name === undefined ? 'it' : absolute} does not exist; ${startOne}`, err);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(absolute);
  } catch (err) {
    throw errnoOf(err) === 'ENOENT' ? missing(err) : socketPathError('check', absolute, err, asOwner);
  }
  const uid = process.getuid?.();
  if (!stat.isSocket()) throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `${absolute} is not a socket: no supervisor's control socket (check --socket)`);
  if (uid !== undefined && stat.uid !== uid) {
    throw new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `${absolute} is owned by uid ${stat.uid}, not by this user (uid ${uid}): not trusted`);
  }
  const text = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(absolute);
    let received = '';
    const fail = (err: BellwetherError): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const noAnswer = (cause?: unknown): BellwetherError =>
      new BellwetherError(
        ErrorCodes.NO_ANSWER,
        `nothing answered on ${absolute} within ${timeoutMs} ms: the supervisor is busy or stuck (or another program listens there); try again, and see its log`,
        { cause },
      );
    const timer = setTimeout(() => fail(noAnswer()), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on('error', (err) => {
      const code = errnoOf(err);
      // Removed since the check above: the supervisor stopped meanwhile.
      if (code === 'ENOENT') fail(missing(err));
      else if (code === 'ECONNREFUSED') {
        fail(notRunning(`nobody listens ${name === undefined ? 'there' : `on ${absolute}`} (a socket left by a supervisor that exited; the next one started with it replaces it)`, err));
      } else if (code === 'EAGAIN') fail(noAnswer(err)); // its listen backlog is full
      else fail(socketPathError('connect to', absolute, err, asOwner));
    });
  });
  return parseStatus(text, absolute);
}

/** Only the fields and types a supervisor sends; anything else is refused. */
function parseStatus(text: string, socketPath: string): StatusReport {
  const bad = (why: string): BellwetherError =>
    new BellwetherError(ErrorCodes.CONTROL_SOCKET_UNSAFE, `the answer on ${socketPath} is not a supervisor's status (${why})`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const report = value as Partial<StatusReport> | null;
  if (typeof report !== 'object' || report === null) throw bad('not an object');
  const pid = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0;
  if (!pid(report.pid) || typeof report.name !== 'string' || !Array.isArray(report.workers)) throw bad('fields missing');
  const optionalNumber = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'number' && Number.isFinite(v));
  const rollout = report.rollout as Record<string, unknown> | undefined | null;
  if (rollout !== undefined && rollout !== null) {
    if (typeof rollout !== 'object' || !['running', 'done', 'failed', 'aborted'].includes(rollout['state'] as string)) throw bad('a wrong rollout');
    if (rollout['slot'] !== undefined && !Number.isInteger(rollout['slot'])) throw bad('a wrong rollout');
    if (rollout['reason'] !== undefined && typeof rollout['reason'] !== 'string') throw bad('a wrong rollout');
  }
  for (const w of report.workers as unknown[]) {
    const slot = w as Partial<SlotInfo> | null;
    if (typeof slot !== 'object' || slot === null) throw bad('a worker is not an object');
    if (!Number.isInteger(slot.index) || typeof slot.state !== 'string' || !Number.isFinite(slot.code) || !Number.isFinite(slot.restarts) || !Number.isFinite(slot.uptime)) {
      throw bad('a worker has wrong fields');
    }
    if (!(slot.pid === undefined || slot.pid === null || pid(slot.pid)) || !optionalNumber(slot.rss)) throw bad('a worker has wrong fields');
  }
  return report as StatusReport;
}

/** For terminal output: control characters (escape sequences included) and bidi overrides become '?'. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '?');
}

/** How a supervisor's status line starts (see the connection handler above). */
const STATUS_LINE = /^\{"pid":(\d+),"name":/;

/**
 * Who is at a socket path: 'stale' only when the kernel refuses the
 * connection (nobody listens); a supervisor, by its pid. A listener that
 * says nothing (an ssh agent, an HTTP server, a busy supervisor) is
 * 'other', never taken for stale.
 */
function probe(socketPath: string): Promise<'stale' | 'other' | number> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    let text = '';
    const done = (who: 'stale' | 'other' | number): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(who);
    };
    const heard = (): void => {
      const pid = STATUS_LINE.exec(text)?.[1];
      done(pid === undefined ? 'other' : Number(pid));
    };
    const timer = setTimeout(() => done('other'), 500);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) heard();
    });
    socket.on('end', heard);
    socket.on('error', (err) => done(errnoOf(err) === 'ECONNREFUSED' ? 'stale' : 'other'));
  });
}
