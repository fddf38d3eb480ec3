/**
 * Children of a benchmark, each the leader of its own process group, killed
 * with their group whatever happens (bench/restarts, bench/reuseport).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What to kill if the bench leaves early (an exception, Ctrl-C): each child's
 * process group. Synchronous, so that it can run on 'exit'.
 */
export const cleanups = new Set<() => void>();

export function runCleanups(): void {
  for (const cleanup of [...cleanups]) {
    cleanups.delete(cleanup);
    cleanup();
  }
}

/** Kills every group on exit, Ctrl-C or SIGTERM until the returned function is called (which kills what is left). */
export function guardGroups(): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    runCleanups();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', runCleanups);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    runCleanups();
    process.off('exit', runCleanups);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

export function killGroup(pgid: number | undefined): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** A detached child (the leader of its own process group), its output kept as lines; SIGKILLed with its group on cleanup. */
export class ProcessGroup {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly closed: Promise<number | null>;
  readonly #cleanup = (): void => killGroup(this.child.pid);

  /** `stdin: 'pipe'` for commands sent with `send()`. */
  constructor(command: string, args: string[], env: NodeJS.ProcessEnv = {}, stdin: 'ignore' | 'pipe' = 'ignore') {
    this.child = spawn(command, args, { detached: true, stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child.stdin?.on('error', () => {}); // EPIPE once it exited
    cleanups.add(this.#cleanup);
    this.closed = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.lines.push(`spawn ${command}: ${err.message}`);
        resolve(null);
      });
      this.child.once('close', (code) => resolve(code));
    });
    for (const stream of [this.child.stdout!, this.child.stderr!]) readline.createInterface({ input: stream }).on('line', (line) => this.lines.push(line));
  }

  /** One line on its stdin (spawned with `stdin: 'pipe'`). */
  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the time `count` matching lines had come (from line `from` on); rejects after `timeoutMs` or if the process exits first. */
  async waitFor(what: string, match: (line: string) => boolean, timeoutMs: number, from = 0, count = 1): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.lines.slice(from).filter(match).length >= count) return performance.now();
      const tail = (): string => this.lines.slice(-10).join('\n');
      if (!this.running) throw new Error(`no ${what}: the process exited (${this.child.exitCode ?? this.child.signalCode}); its last output:\n${tail()}`);
      if (performance.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; last output:\n${tail()}`);
      await sleep(5);
    }
  }

  /** SIGTERM, up to `graceMs` to leave, then SIGKILL to the whole group. */
  async stop(graceMs: number): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    await Promise.race([this.closed, sleep(graceMs)]);
    killGroup(this.child.pid);
    cleanups.delete(this.#cleanup);
  }
}
