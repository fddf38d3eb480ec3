#!/usr/bin/env node
// First: evaluated before every other import (see launched-by.ts).
import { LAUNCHED_BY } from './launched-by.js';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { type StatusReport, defaultControlSocket, printable, readStatus } from './cluster/control-socket.js';
import { GIVEN_UP_EXIT_CODE, ORPHAN_EXIT_CODE } from './cluster/protocol.js';
import { warnAboutReuseport } from './cluster/reuseport-check.js';

/** `bellwether status` when no supervisor of that name answers (as `lock` when nobody holds the lock). */
const NOT_RUNNING_EXIT_CODE = 3;
import { Supervisor } from './cluster/supervisor.js';
import { BellwetherError, ErrorCodes } from './errors.js';
import { defaultLockDir } from './lock/lock-dir.js';
import { inspectHostLock, resetHostLock } from './lock/inspect.js';

const HELP = `Usage: bellwether <command> [options]

Commands:
  start <entry.js> [options] [-- args for the entry]
      Runs <entry.js> as a prefork server: N workers with stable indexes
      (BELLWETHER_WORKER_INDEX), liveness, restarts, signals:
        SIGTERM/SIGINT  graceful stop (a second one: stop at once)
        SIGHUP          rolling restart, one slot at a time
        SIGTTIN/SIGTTOU one worker more / less
      --workers N            workers (default: the number of CPUs)
      --timeout MS           silent longer than this -> replaced (default 30000)
      --heartbeat MS         worker heartbeat interval, below --timeout (default 1000)
      --kill-timeout MS      SIGTERM -> SIGKILL for killed workers (default 5000)
      --shutdown-timeout MS  graceful stop -> SIGKILL (default 30000)
      --boot-timeout MS      not ready after this -> replaced (default 60000)
      --restart-delay MS     first delay before re-forking an exited worker, doubling (default 100)
      --max-restarts N       a slot whose worker exits more than N times within
                             --restart-window is given up (default 5)
      --restart-window MS    the crash-loop window (default 60000)
      --stop-with-parent     stop when the process that started this one is gone
      --parent-pid PID       the same, watching PID (e.g. a wrapper's $$): also
                             notices a parent that died before this process loaded
      --name NAME            supervisor name, for status (default "default")
      --socket PATH          control socket (default: in the lock directory)
      Exit code: 0 after a stop by signal, ${GIVEN_UP_EXIT_CODE} once every worker slot was given
      up (crash loop: nothing left to serve), ${ORPHAN_EXIT_CODE} when stopped because the parent
      was gone (--stop-with-parent), 2 for bad input.

  status [--name NAME] [--socket PATH] [--json]
      Per worker slot of a running supervisor: index, pid, state, status
      code (0 healthy, >0 unhealthy code, -1 silent), restarts, uptime, memory.
      Slots given up after a crash loop are listed as "given-up".
      Exit code 0, or 3 when no supervisor of that name is running.

  lock <name> [--lock-dir DIR] [--json] [--reset]
      Shows whether the host singleton <name> is running on this host (its
      flock(2) lock is held), how many processes wait for it, and the last
      holder's fencing token and pid. Exit code 0 when held, 3 when nobody
      holds it.
      --reset restarts the fencing count (the next holder gets token 1),
      only while nobody holds the lock (exit code 3 otherwise, nothing changed).

Options:
  --lock-dir DIR   lock directory (default: ${defaultLockDir()})
  --json           print JSON instead of text
  -h, --help       this help
  -v, --version    the version
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** A number option, or undefined; the Supervisor checks the range. */
function numberOption(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) throw new BellwetherError(ErrorCodes.INVALID_OPTION, `${flag} must be a number, got ${JSON.stringify(value)}`);
  return number;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'lock-dir': { type: 'string' },
      workers: { type: 'string' },
      timeout: { type: 'string' },
      heartbeat: { type: 'string' },
      'kill-timeout': { type: 'string' },
      'shutdown-timeout': { type: 'string' },
      'boot-timeout': { type: 'string' },
      'restart-delay': { type: 'string' },
      'max-restarts': { type: 'string' },
      'restart-window': { type: 'string' },
      'stop-with-parent': { type: 'boolean', default: false },
      'parent-pid': { type: 'string' },
      name: { type: 'string' },
      socket: { type: 'string' },
      json: { type: 'boolean', default: false },
      reset: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'v', default: false },
    },
  });
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const [command, name, ...rest] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  if (command === 'start' && name !== undefined) {
    const supervisor = new Supervisor({
      exec: name,
      args: rest,
      ...defined({
        workers: numberOption(values.workers, '--workers'),
        timeout: numberOption(values.timeout, '--timeout'),
        heartbeat: numberOption(values.heartbeat, '--heartbeat'),
        killTimeout: numberOption(values['kill-timeout'], '--kill-timeout'),
        shutdownTimeout: numberOption(values['shutdown-timeout'], '--shutdown-timeout'),
        bootTimeout: numberOption(values['boot-timeout'], '--boot-timeout'),
        name: values.name,
        controlSocket: values.socket,
      }),
      restart: defined({
        initialDelay: numberOption(values['restart-delay'], '--restart-delay'),
        maxRestarts: numberOption(values['max-restarts'], '--max-restarts'),
        window: numberOption(values['restart-window'], '--restart-window'),
      }),
      stopWithParent: numberOption(values['parent-pid'], '--parent-pid') ?? (values['stop-with-parent'] ? LAUNCHED_BY : false),
    });
    let exitCode = 0;
    supervisor.on('error', (err) => process.stderr.write(`bellwether: ${err.code}: ${err.message}\n`));
    supervisor.on('exit', (slot, exit) =>
      process.stderr.write(`bellwether: worker ${slot.index} exited (${exit.signal ?? exit.code})${exit.replaced ? ', replacing it' : ''}\n`),
    );
    supervisor.on('kill', (slot, reason) => process.stderr.write(`bellwether: killing worker ${slot.index} (pid ${slot.pid}): ${reason}\n`));
    supervisor.on('restarted', () => process.stderr.write('bellwether: rolling restart done: every worker replaced\n'));
    // A primary with no worker left looks healthy to a process manager while serving nothing: leave instead.
    // The first reason to leave sets the exit code.
    supervisor.on('exhausted', (slots) => {
      exitCode ||= GIVEN_UP_EXIT_CODE;
      process.stderr.write(`bellwether: every worker slot (${slots.length}) was given up after crash loops; nothing left to serve, exiting with code ${exitCode}\n`);
      void supervisor.stop();
    });
    supervisor.on('orphaned', ({ parent }) => {
      exitCode ||= ORPHAN_EXIT_CODE;
      process.stderr.write(`bellwether: parent process ${parent} is gone (--stop-with-parent / --parent-pid); stopping\n`);
    });
    const stopped = new Promise<void>((resolve) => supervisor.once('stopped', () => resolve()));
    // Bun without net.ipv4.tcp_migrate_req=1: restarts may reset queued connections.
    warnAboutReuseport();
    await supervisor.start();
    const ready = supervisor.status().filter((slot) => slot.state === 'ready').length;
    if (supervisor.state === 'running') process.stderr.write(`bellwether: ${ready} of ${supervisor.status().length} workers ready (primary pid ${process.pid})\n`);
    await stopped;
    return exitCode;
  }
  if (command === 'status' && name === undefined) {
    const name = values.name ?? 'default';
    const socket = values.socket ?? defaultControlSocket(name);
    let status: StatusReport;
    try {
      status = await readStatus(socket);
    } catch (err) {
      if (!(err instanceof BellwetherError) || err.code !== ErrorCodes.NOT_RUNNING) throw err;
      process.stderr.write(`bellwether: no supervisor named ${printable(name)} is running (no control socket answers at ${printable(socket)})\n`);
      return NOT_RUNNING_EXIT_CODE;
    }
    if (values.json) process.stdout.write(`${JSON.stringify(status)}\n`);
    else {
      // Only safe characters reach the terminal, whatever the socket said.
      process.stdout.write(`supervisor ${printable(status.name)} (pid ${status.pid})\n`);
      process.stdout.write('index  pid      state     code  restarts  uptime(s)  rss(MiB)\n');
      for (const w of status.workers) {
        const rss = typeof w.rss === 'number' ? (w.rss / 2 ** 20).toFixed(1) : '-';
        process.stdout.write(
          `${String(w.index).padEnd(7)}${String(w.pid ?? '-').padEnd(9)}${printable(w.state).padEnd(10)}${String(w.code).padEnd(6)}${String(w.restarts).padEnd(10)}${(w.uptime / 1000).toFixed(0).padEnd(11)}${rss}\n`,
        );
      }
      const rollout = status.rollout;
      if (rollout?.state === 'failed') {
        process.stdout.write(`last rolling restart: stopped at slot ${rollout.slot}: ${printable(String(rollout.reason))}; its old worker keeps serving\n`);
      } else if (rollout) process.stdout.write(`last rolling restart: ${printable(rollout.state)}${rollout.reason ? ` (${printable(rollout.reason)})` : ''}\n`);
      const givenUp = status.workers.filter((w) => w.state === 'given-up').map((w) => w.index);
      if (givenUp.length > 0) {
        process.stdout.write(`given up after crash loops (not restarted): slot${givenUp.length > 1 ? 's' : ''} ${givenUp.join(', ')}; see the primary's log\n`);
      }
    }
    return 0;
  }
  if (command !== 'lock' || name === undefined || rest.length > 0) {
    process.stderr.write(`bellwether: unknown command line: ${positionals.join(' ')}\n\n${HELP}`);
    return 2;
  }
  const lockDir = values['lock-dir'];
  if (values.reset) {
    if (resetHostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined)) {
      process.stdout.write(`${name}: fencing count reset; the next holder gets token 1\n`);
      return 0;
    }
    process.stderr.write(`bellwether: ${name} is running (lock held): not reset; stop it first\n`);
    return 3;
  }
  const report = inspectHostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined);
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    const last = report.lastToken === undefined ? 'never held' : `last holder pid ${report.lastPid}, fencing token ${report.lastToken}`;
    process.stdout.write(`${name}: ${report.held ? 'running (lock held)' : 'not running (lock free)'}; ${report.waiting} waiting; ${last}\n  ${report.file}\n`);
  }
  return report.held ? 0 : 3;
}

/** Drops undefined values, so that the Supervisor applies its defaults. */
function defined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  const code = err instanceof BellwetherError ? `${err.code}: ` : '';
  process.stderr.write(`bellwether: ${code}${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
}
