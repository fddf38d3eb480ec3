import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import readline from 'node:readline';
import type { Runtime } from './runtimes.js';
import { SETPRIV } from './tools.js';

export interface FixtureEvent {
  event: string;
  [key: string]: unknown;
}

/**
 * A fixture process that reports JSON lines on stdout. Every event is kept,
 * and `next()` awaits the next one matching a predicate.
 */
export class Fixture {
  readonly child: ChildProcess;
  readonly label: string;
  readonly events: FixtureEvent[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: { match: (e: FixtureEvent) => boolean; resolve: (e: FixtureEvent) => void; from: number }[] = [];
  #stderr = '';
  #stderrWaiters: ((text: string) => boolean)[] = [];

  constructor(command: string, args: string[], label: string, env: NodeJS.ProcessEnv = {}) {
    this.label = label;
    // Under setpriv --pdeathsig KILL: if the process that started the fixture
    // dies (a test runner killed at its timeout, a runner fixture SIGKILLed),
    // the kernel kills the fixture too, so nothing it started is left behind
    // (its workers then fence themselves off). exec keeps the pid.
    const [bin, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];
    this.child = spawn(bin, argv, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    // 'close', not 'exit': it comes after the last stdout line has been read.
    this.exited = once(this.child, 'close').then(([code, signal]) => ({ code, signal })) as Fixture['exited'];
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stderr += chunk;
      this.#stderrWaiters = this.#stderrWaiters.filter((w) => !w(this.#stderr));
    });
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let event: FixtureEvent;
      try {
        event = JSON.parse(line) as FixtureEvent;
      } catch {
        event = { event: 'output', line };
      }
      this.events.push(event);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(event)) return true;
        w.resolve(event);
        return false;
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /**
   * Resolves with the first event (already seen or future) named `name` that
   * matches. Bounded (60 s unless given): a failure says what the fixture
   * last reported instead of running into the test's own timeout.
   */
  next(name: string, match: (e: FixtureEvent) => boolean = () => true, seen = 0, ms = 60_000): Promise<FixtureEvent> {
    const wanted = (e: FixtureEvent): boolean => e.event === name && match(e);
    const found = this.events.slice(seen).find(wanted);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== settle);
        reject(new Error(`${this.label}: no "${name}" within ${ms} ms; last reported: ${this.events.slice(-6).map((e) => JSON.stringify(e)).join(' ')}`));
      }, ms);
      timer.unref();
      const settle = (event: FixtureEvent): void => {
        clearTimeout(timer);
        resolve(event);
      };
      this.#waiters.push({ match: wanted, resolve: settle, from: seen });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited (${code ?? signal}) before "${name}"; stderr: ${this.#stderr.slice(-2000)}`));
      });
    });
  }

  /** Resolves once stderr (so far, or later) matches `pattern`. */
  stderrMatches(pattern: RegExp): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (text: string): boolean => {
        if (!pattern.test(text)) return false;
        resolve();
        return true;
      };
      if (check(this.#stderr)) return;
      this.#stderrWaiters.push(check);
      void this.exited.then(() => reject(new Error(`${this.label} exited before stderr matched ${pattern}: ${this.#stderr.slice(-2000)}`)));
    });
  }

  count(name: string): number {
    return this.events.filter((e) => e.event === name).length;
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }
}

/**
 * `wrapper`: a command line that execs the rest in place (same pid), such as
 * scripts/without-util-linux.sh with BW_TEST_TOOLS given.
 */
export function startFixture(runtime: Runtime, script: string, args: string[], env: NodeJS.ProcessEnv = {}, wrapper: string[] = []): Fixture {
  const [command, ...prefix] = [...wrapper, runtime.bin];
  return new Fixture(command as string, [...prefix, script, ...args], `${runtime.name} ${script.split('/').pop()} ${args.join(' ')}`, env);
}

/** Tracks every fixture of a test so none outlives it, whatever the outcome. */
export class Fixtures {
  readonly all: Fixture[] = [];

  add<T extends Fixture>(fixture: T): T {
    this.all.push(fixture);
    return fixture;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.all.map((f) => f.kill('SIGKILL')));
  }
}
