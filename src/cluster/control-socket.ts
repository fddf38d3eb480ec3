import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { defaultLockDir, prepareLockDir } from '../lock/lock-dir.js';
import type { SlotInfo } from './slot.js';

/** Where `bellwether status --name N` finds supervisor N by default: the per-user lock directory. */
export function defaultControlSocket(name: string): string {
  return path.join(defaultLockDir(), `supervisor-${name}.sock`);
}

/**
 * A unix socket (0600, in a directory only this user can write) that answers
 * every connection with the supervisor's status as one JSON line.
 */
export class ControlSocket {
  readonly path: string;
  readonly #server: net.Server;
  readonly #explicit: boolean;

  constructor(name: string, socketPath: string | undefined, status: () => SlotInfo[]) {
    this.#explicit = socketPath !== undefined;
    this.path = socketPath ?? defaultControlSocket(name);
    this.#server = net.createServer((connection) => {
      connection.end(`${JSON.stringify({ pid: process.pid, name, workers: status() })}\n`);
    });
    this.#server.unref();
  }

  async listen(): Promise<void> {
    prepareLockDir(path.dirname(this.path), !this.#explicit);
    if (fs.existsSync(this.path)) {
      if (await answers(this.path)) {
        throw new BellwetherError(ErrorCodes.ALREADY_RUNNING, `a supervisor already answers on ${this.path}; give this one another name`);
      }
      fs.rmSync(this.path, { force: true }); // left by a primary that died
    }
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(this.path, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(this.path, 0o600);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    fs.rmSync(this.path, { force: true });
  }
}

/** Reads one status line from a control socket. */
export function readStatus(socketPath: string, timeoutMs = 2000): Promise<{ pid: number; name: string; workers: SlotInfo[] }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(err);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function answers(socketPath: string): Promise<boolean> {
  return readStatus(socketPath, 500).then(
    () => true,
    () => false,
  );
}
