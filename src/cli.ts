#!/usr/bin/env node
// First: evaluated before every other import (see launched-by.ts).
import { LAUNCHED_BY } from './launched-by.js';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { type StatusReport, defaultControlSocket, printable, readStatus } from './cluster/control-socket.js';
import { reuseportWarning } from './cluster/reuseport-check.js';
import { Supervisor } from './cluster/supervisor.js';
import { DEFAULT_ELECTION_ROOT } from './election/ballots.js';
import { type ElectionReport, queryElection } from './election/inspect.js';
import { BellwetherError, ErrorCodes } from './errors.js';
import { EXIT, exitCodeOf } from './exit-codes.js';
import { defaultLockDir } from './lock/lock-dir.js';
import { inspectHostLock, resetHostLock } from './lock/inspect.js';
import { type Logger, jsonLogger, lineLogger } from './log/logger.js';
import { checkMillis, checkName } from './validate.js';
import { parseConnectString } from './zk/connect-string.js';
import { checkPath } from './zk/paths.js';

// A reader of our output that went away (`| head`, a log shipper that
// restarted) must not end a running supervisor or turn a query into a stack
// trace: what cannot be written is dropped.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

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
      --log-format FORMAT    text (default): "bellwether: ..." lines on stderr; json:
                             one JSON object per line (level, time, event, msg, ...)
      Exit code 0 after a stop by signal, ${EXIT.GIVEN_UP} once every worker slot was given
      up (crash loop: nothing left to serve), ${EXIT.ORPHANED} when stopped because the parent
      was gone, ${EXIT.RUNNING} when a supervisor of that name already runs.

  status [--name NAME] [--socket PATH] [--json]
      Per worker slot of a running supervisor: index, pid, state, status
      code (0 healthy, >0 unhealthy code, -1 silent), restarts, uptime, memory.
      Slots given up after a crash loop are listed as "given-up".
      Exit code 0, or ${EXIT.NOT_RUNNING} when no supervisor of that name is running.

  lock <name> [--lock-dir DIR] [--json] [--reset]
      Shows whether the host singleton <name> is running on this host (its
      flock(2) lock is held), how many processes wait for it (their pids),
      and the last holder's fencing token and pid. Exit code 0 when held, ${EXIT.NOT_RUNNING} when nobody
      holds it.
      --reset restarts the fencing count (the next holder gets token 1),
      only while nobody holds the lock (exit code ${EXIT.RUNNING} otherwise, nothing changed).
      --lock-dir DIR   lock directory (default: ${defaultLockDir()})

  leader <name> --zk HOST:PORT[,...][/chroot] [--root PATH] [--timeout MS] [--json]
      Shows the acknowledged leader of the fleet election <name> (a cluster
      singleton's, a Candidate's): its data, its fencing token (its ballot's
      czxid), how long it has led (from its leader_ack's creation time by the
      ZooKeeper server's clock to now by this host's), and the ballots in
      order (the lowest leads) with their session ids. Exit code 0 when a
      leader has acknowledged, ${EXIT.NOT_RUNNING} when none has (no ballots, no leader_ack
      yet, or one that does not belong to the lowest ballot: the reason is
      printed), ${EXIT.ZK_UNREACHABLE} when ZooKeeper gave no session or answer within --timeout.
      --zk CONNECT     ZooKeeper connect string, as the app's
      --root PATH      election root (default: ${DEFAULT_ELECTION_ROOT})
      --timeout MS     how long to wait for ZooKeeper (default 5000)

Options:
  --json           print JSON instead of text (status, lock, leader); on failure,
                   {"error":{"code","exitCode","message"}}
  -h, --help       this help
  -v, --version    the version

Exit codes (failures print one line on stderr: bellwether: BW_ERR_...: what, where, what to do):
  ${EXIT.OK}   done (status: it answered; lock: held; leader: acknowledged)
  ${EXIT.FAILED}   an unexpected failure: please report it
  ${EXIT.NOT_RUNNING}   not running (status: no supervisor; lock: the lock is free; leader: none acknowledged)
  ${EXIT.GIVEN_UP}   start: every worker slot given up after crash loops
  ${EXIT.RUNNING}   refused because it runs (start: that name; lock --reset: the lock is held)
  ${EXIT.USAGE}  usage: unknown command or option, missing or extra argument, bad value, name,
       path or connect string
  ${EXIT.DATA}  a lock file holding something else (lock --reset rewrites it)
  ${EXIT.NO_INPUT}  missing: the entry script, the lock directory, the socket's directory
  ${EXIT.ZK_UNREACHABLE}  leader: ZooKeeper gave no session or no answer within --timeout
  ${EXIT.UNAVAILABLE}  no way to wait for the host lock (neither flock(1) nor fs-ext)
  ${EXIT.ORPHANED}  start: stopped because its parent was gone
  ${EXIT.NO_ANSWER}  status: the supervisor did not answer in time (busy or stuck): try again
  ${EXIT.NO_PERMISSION}  permission denied (control socket, its directory, lock directory or file;
       leader: an ACL on the election's nodes)
  ${EXIT.PATH_REFUSED}  a path refused: not a socket, another user's, open to others, too long,
       another program's socket
`;

/** The options each command takes (besides --help and --version), and how it is called. */
const COMMANDS: Record<string, { options: string[]; usage: string }> = {
  start: {
    options: [
      'workers', 'timeout', 'heartbeat', 'kill-timeout', 'shutdown-timeout', 'boot-timeout', 'restart-delay', 'max-restarts',
      'restart-window', 'stop-with-parent', 'parent-pid', 'name', 'socket', 'log-format',
    ],
    usage: 'bellwether start <entry.js> [options] [-- args for the entry]',
  },
  status: { options: ['name', 'socket', 'json'], usage: 'bellwether status [--name NAME] [--socket PATH] [--json]' },
  lock: { options: ['lock-dir', 'json', 'reset'], usage: 'bellwether lock <name> [--lock-dir DIR] [--json] [--reset]' },
  leader: { options: ['zk', 'root', 'timeout', 'json'], usage: 'bellwether leader <name> --zk HOST:PORT[,...][/chroot] [--root PATH] [--timeout MS] [--json]' },
};

/** Supervisor option names as its errors say them, and the flags that set them. */
const FLAG_OF: Record<string, string> = {
  workers: '--workers',
  timeout: '--timeout',
  heartbeat: '--heartbeat',
  killTimeout: '--kill-timeout',
  shutdownTimeout: '--shutdown-timeout',
  bootTimeout: '--boot-timeout',
  'restart.initialDelay': '--restart-delay',
  'restart.maxRestarts': '--max-restarts',
  'restart.window': '--restart-window',
  'supervisor name': 'supervisor name (--name)',
  controlSocket: '--socket',
};

function usage(message: string): BellwetherError {
  return new BellwetherError(ErrorCodes.USAGE, message);
}

function quoted(args: string[]): string {
  return args.map((a) => JSON.stringify(a)).join(' ');
}

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

/** parseArgs' errors (several lines, in its words) as one line in ours. */
function parseError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return err;
  const message = (err as Error).message;
  const flag = /'(-[^' ]*)/.exec(message)?.[1] ?? 'an option';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return usage(`unknown option ${flag} (bellwether --help lists the options)`);
  if (/does not take/.test(message)) return usage(`${flag} takes no value`);
  return usage(`${flag} needs a value (one starting with a dash is written ${flag}=VALUE)`);
}

/** A Supervisor option error in the words of the command line: its flags instead of its option names. */
function inFlags(err: unknown): unknown {
  if (!(err instanceof BellwetherError) || (err.code !== ErrorCodes.INVALID_OPTION && err.code !== ErrorCodes.INVALID_NAME)) return err;
  let message = err.message;
  for (const [option, flag] of Object.entries(FLAG_OF)) {
    message = message.replace(new RegExp(`(?<![\\w.-])${option.replace('.', '\\.')}(?= must| \\()`, 'g'), flag);
  }
  return new BellwetherError(err.code, message, { cause: err });
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
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
        'stop-with-parent': { type: 'boolean' },
        'parent-pid': { type: 'string' },
        name: { type: 'string' },
        socket: { type: 'string' },
        zk: { type: 'string' },
        root: { type: 'string' },
        'log-format': { type: 'string' },
        json: { type: 'boolean' },
        reset: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    throw parseError(err);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return EXIT.OK;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.OK;
  }
  const [command, ...args] = positionals;
  if (command === undefined) throw usage('no command: use bellwether start, status, lock or leader (bellwether --help)');
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (spec === undefined) throw usage(`unknown command ${JSON.stringify(command)}: use bellwether start, status, lock or leader (bellwether --help)`);
  for (const [option, value] of Object.entries(values)) {
    if (!spec.options.includes(option)) throw usage(`--${option} is not an option of ${command} (its options: ${spec.options.map((o) => `--${o}`).join(', ')})`);
    // An empty path would be the current directory.
    if (value === '') throw new BellwetherError(ErrorCodes.INVALID_OPTION, `--${option} needs a value, got ""`);
  }
  if (command === 'start') {
    const [entry, ...rest] = args;
    if (entry === undefined || entry === '') throw usage(`start needs the workers' entry script: ${spec.usage}`);
    return start(entry, rest, values);
  }
  if (command === 'status') {
    if (args.length > 0) throw usage(`status takes no argument, got ${quoted(args)}: ${spec.usage}`);
    return status(values.name, values.socket, values.json === true);
  }
  if (args.length !== 1) {
    const whose = command === 'lock' ? "the singleton's" : "the election's";
    throw usage(args.length === 0 ? `${command} needs ${whose} name: ${spec.usage}` : `${command} takes one name, got ${quoted(args)}: ${spec.usage}`);
  }
  if (command === 'leader') return leader(args[0]!, values);
  return lock(args[0]!, values['lock-dir'], values.json === true, values.reset === true);
}

type Values = Partial<Record<string, string | boolean>>;

/**
 * The supervisor's lines go through the --log-format logger from here on;
 * so does a failure to start (JSON lines stay JSON lines).
 */
async function start(entry: string, args: string[], values: Values): Promise<number> {
  const format = values['log-format'] ?? 'text';
  if (format !== 'text' && format !== 'json') throw new BellwetherError(ErrorCodes.INVALID_OPTION, `--log-format must be text or json, got ${JSON.stringify(format)}`);
  const log = format === 'json' ? jsonLogger() : lineLogger();
  try {
    return await supervise(entry, args, values, log);
  } catch (err) {
    const { code, exitCode, line } = failure(err);
    log.error({ event: 'failed', code, exitCode }, line);
    return exitCode;
  }
}

async function supervise(entry: string, args: string[], values: Values, log: Logger): Promise<number> {
  const text = (flag: string): string | undefined => values[flag] as string | undefined;
  const parentPid = numberOption(text('parent-pid'), '--parent-pid');
  if (parentPid !== undefined && !(Number.isInteger(parentPid) && parentPid > 0)) {
    throw new BellwetherError(ErrorCodes.INVALID_OPTION, `--parent-pid must be a process id (a positive integer), got ${JSON.stringify(text('parent-pid'))}`);
  }
  let supervisor: Supervisor;
  try {
    supervisor = new Supervisor({
      exec: entry,
      args,
      ...defined({
        workers: numberOption(text('workers'), '--workers'),
        timeout: numberOption(text('timeout'), '--timeout'),
        heartbeat: numberOption(text('heartbeat'), '--heartbeat'),
        killTimeout: numberOption(text('kill-timeout'), '--kill-timeout'),
        shutdownTimeout: numberOption(text('shutdown-timeout'), '--shutdown-timeout'),
        bootTimeout: numberOption(text('boot-timeout'), '--boot-timeout'),
        name: text('name'),
        controlSocket: text('socket'),
      }),
      restart: defined({
        initialDelay: numberOption(text('restart-delay'), '--restart-delay'),
        maxRestarts: numberOption(text('max-restarts'), '--max-restarts'),
        window: numberOption(text('restart-window'), '--restart-window'),
      }),
      stopWithParent: parentPid ?? (values['stop-with-parent'] ? LAUNCHED_BY : false),
      logger: log,
    });
  } catch (err) {
    throw inFlags(err);
  }
  let exitCode: number = EXIT.OK;
  // The Supervisor logs its workers' exits, restarts and kills, crash loops, rolling restarts and errors.
  // A primary with no worker left looks healthy to a process manager while serving nothing: leave instead.
  // The first reason to leave sets the exit code.
  supervisor.on('exhausted', (slots) => {
    exitCode ||= EXIT.GIVEN_UP;
    log.error(
      { event: 'exhausted', slots: slots.length, exitCode },
      `every worker slot (${slots.length}) was given up after crash loops; nothing left to serve, exiting with code ${exitCode}`,
    );
    void supervisor.stop();
  });
  supervisor.on('orphaned', ({ parent, ppid }) => {
    exitCode ||= EXIT.ORPHANED;
    log.warn({ event: 'orphaned', parent, ppid, exitCode }, `parent process ${parent} is gone (--stop-with-parent / --parent-pid); stopping`);
  });
  const stopped = new Promise<void>((resolve) => supervisor.once('stopped', () => resolve()));
  // Bun without net.ipv4.tcp_migrate_req=1: restarts may reset queued connections. Said once a
  // worker serves, so that a start that fails says only why.
  supervisor.once('ready', () => {
    const warning = reuseportWarning();
    if (warning) log.warn({ event: 'reuseport' }, warning);
  });
  await supervisor.start();
  const ready = supervisor.status().filter((slot) => slot.state === 'ready').length;
  const workers = supervisor.status().length;
  if (supervisor.state === 'running') log.info({ event: 'started', ready, workers }, `${ready} of ${workers} workers ready (primary pid ${process.pid})`);
  await stopped;
  return exitCode;
}

async function status(givenName: string | undefined, socket: string | undefined, json: boolean): Promise<number> {
  const name = checkName(givenName ?? 'default', 'supervisor name (--name)');
  // Named in messages when its socket is found by name.
  const report: StatusReport = await readStatus(socket ?? defaultControlSocket(name), { name: socket === undefined ? name : undefined });
  if (json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return EXIT.OK;
  }
  // Only safe characters reach the terminal, whatever the socket said.
  process.stdout.write(`supervisor ${printable(report.name)} (pid ${report.pid})\n`);
  process.stdout.write('index  pid      state     code  restarts  uptime(s)  rss(MiB)\n');
  for (const w of report.workers) {
    const rss = typeof w.rss === 'number' ? (w.rss / 2 ** 20).toFixed(1) : '-';
    process.stdout.write(
      `${String(w.index).padEnd(7)}${String(w.pid ?? '-').padEnd(9)}${printable(w.state).padEnd(10)}${String(w.code).padEnd(6)}${String(w.restarts).padEnd(10)}${(w.uptime / 1000).toFixed(0).padEnd(11)}${rss}\n`,
    );
  }
  const rollout = report.rollout;
  if (rollout?.state === 'failed') {
    process.stdout.write(`last rolling restart: stopped at slot ${rollout.slot}: ${printable(String(rollout.reason))}; its old worker keeps serving\n`);
  } else if (rollout) process.stdout.write(`last rolling restart: ${printable(rollout.state)}${rollout.reason ? ` (${printable(rollout.reason)})` : ''}\n`);
  const givenUp = report.workers.filter((w) => w.state === 'given-up').map((w) => w.index);
  if (givenUp.length > 0) {
    process.stdout.write(`given up after crash loops (not restarted): slot${givenUp.length > 1 ? 's' : ''} ${givenUp.join(', ')}; see the primary's log\n`);
  }
  return EXIT.OK;
}

function lock(name: string, lockDir: string | undefined, json: boolean, reset: boolean): number {
  if (reset) {
    const { file, reset: done } = resetHostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined);
    if (!done) throw new BellwetherError(ErrorCodes.ALREADY_RUNNING, `${name} is running (its lock ${file} is held): fencing count not reset; stop it first`);
    process.stdout.write(json ? `${JSON.stringify({ file, reset: true })}\n` : `${name}: fencing count reset; the next holder gets token 1\n`);
    return EXIT.OK;
  }
  const report = inspectHostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined);
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    const last = report.lastToken === undefined ? 'never held' : `last holder pid ${report.lastPid}, fencing token ${report.lastToken}`;
    // The first line as it always was (scripts read it); the waiting pids on a line of their own.
    const pids = report.waiting > 0 ? `  waiting: pid${report.waiting > 1 ? 's' : ''} ${report.waitingPids.join(', ')}\n` : '';
    process.stdout.write(`${name}: ${report.held ? 'running (lock held)' : 'not running (lock free)'}; ${report.waiting} waiting; ${last}\n  ${report.file}\n${pids}`);
  }
  return report.held ? EXIT.OK : EXIT.NOT_RUNNING;
}

async function leader(name: string, values: Values): Promise<number> {
  const connect = values['zk'] as string | undefined;
  if (connect === undefined) throw usage(`leader needs --zk, the ZooKeeper connect string: ${COMMANDS['leader']!.usage}`);
  parseConnectString(connect);
  checkName(name, 'election name');
  const root = checkPath(values['root'] ?? DEFAULT_ELECTION_ROOT, 'election root (--root)');
  const timeout = checkMillis(numberOption(values['timeout'] as string | undefined, '--timeout'), '--timeout', 5000, 1);
  let report: ElectionReport;
  try {
    report = await queryElection(connect, name, root, timeout);
  } catch (err) {
    if (exitCodeOf(err) !== EXIT.ZK_UNREACHABLE) throw err;
    const { code, message } = err as BellwetherError;
    throw new BellwetherError(code, `${message}: is ZooKeeper running there and reachable from this host? (--timeout MS waits longer)`, { cause: err });
  }
  if (values['json']) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    const { leader: led } = report;
    process.stdout.write(
      led
        ? `${name}: led by session ${led.session} for ${duration(led.leadingMs)} (acknowledged ${led.since} by ZooKeeper's clock), token ${led.token}\n  data: ${printable(led.data)}\n`
        : `${name}: no acknowledged leader: ${printable(report.reason ?? '')}\n`,
    );
    process.stdout.write(report.ballots.length === 0 ? `no ballots in ${report.path}\n` : `ballots in ${report.path}, the lowest leads:\n`);
    for (const b of report.ballots) {
      process.stdout.write(`  ${b.leader ? 'leader' : '      '}  ${printable(b.ballot)}  session ${b.session}  token ${b.token}  data ${printable(b.data)}\n`);
    }
  }
  return report.leader ? EXIT.OK : EXIT.NOT_RUNNING;
}

/** 12.3 s; 4m 05s; 3h 02m 01s; 2d 03h 02m 01s. */
function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const units: [string, number][] = [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]];
  let rest = Math.floor(ms / 1000);
  const parts = units.map(([unit, seconds]) => {
    const n = Math.floor(rest / seconds);
    rest -= n * seconds;
    return [n, unit] as const;
  });
  const first = parts.findIndex(([n]) => n > 0);
  return parts.slice(first).map(([n, unit], i) => `${i === 0 ? n : String(n).padStart(2, '0')}${unit}`).join(' ');
}

/** Drops undefined values, so that the Supervisor applies its defaults. */
function defined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A failure in one line (its code, what failed, where, what to do; never a stack trace), and its exit code. */
function failure(err: unknown): { code: string | null; exitCode: number; message: string; line: string } {
  const code = err instanceof BellwetherError ? err.code : null;
  // One line of safe characters: names and paths come from the command line and the file system.
  const message = printable(err instanceof Error ? err.message : String(err));
  return { code, exitCode: exitCodeOf(err), message, line: `${code ?? 'unexpected error (please report it)'}: ${message}` };
}

/** A failure, as one line on stderr and, under --json, as an error object on stdout. */
function fail(err: unknown, json: boolean): number {
  const { code, exitCode, message, line } = failure(err);
  process.stderr.write(`bellwether: ${line}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, exitCode, message } })}\n`);
  return exitCode;
}

const argv = process.argv.slice(2);
try {
  process.exitCode = await main(argv);
} catch (err) {
  const end = argv.indexOf('--');
  process.exitCode = fail(err, (end === -1 ? argv : argv.slice(0, end)).includes('--json'));
}
