import { type ChildProcess, spawn } from 'node:child_process';
import readline from 'node:readline';

/** A child whose stdout lines can be awaited one by one. */
export class LineChild {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiter: ((line: string) => void) | undefined;
  readonly exited: Promise<void>;

  /** `stderr: 'pipe'`: read from `child.stderr` (the supervisor's lines), instead of shown. */
  constructor(command: string, args: string[], env: NodeJS.ProcessEnv = {}, stderr: 'inherit' | 'pipe' = 'inherit') {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', stderr], env: { ...process.env, ...env } });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const waiter = this.#waiter;
      if (waiter) {
        this.#waiter = undefined;
        waiter(line);
      } else this.#lines.push(line);
    });
  }

  /** The next line, or a rejection after `timeoutMs` (every wait is bounded). */
  line(timeoutMs = 60_000): Promise<string> {
    const queued = this.#lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line from ${this.child.spawnfile} within ${timeoutMs} ms`)), timeoutMs);
      this.#waiter = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
    });
  }

  /** Reads lines until `wanted` comes. */
  async until(wanted: string, timeoutMs?: number): Promise<void> {
    while ((await this.line(timeoutMs)) !== wanted);
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    this.child.stdin?.destroy();
    await this.exited;
  }
}
