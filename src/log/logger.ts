/**
 * Logging. Every part that changes state (Supervisor, ZkSession, Candidate,
 * Observer, singleton()) takes a `logger`: pino's `Logger` and Fastify's
 * `app.log` are ones as they are. A part logs its state changes only, never
 * per request: one object with a stable `event` field, and a short message
 * that reads on its own. Without a logger a part logs nothing (a library
 * prints nothing it was not asked to). `bellwether start` logs through one of
 * the two loggers below: today's `bellwether: ...` lines, or JSON lines.
 */
import os from 'node:os';
import { BellwetherError, ErrorCodes } from '../errors.js';

/** What a `logger` option takes: pino-compatible (pino's `Logger`, Fastify's `app.log`). */
export interface Logger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
  /** A logger whose lines also carry `bindings`. */
  child(bindings: object): Logger;
}

const METHODS = ['debug', 'info', 'warn', 'error', 'child'] as const;

/** The default of every part: nothing is logged. */
export const NO_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => NO_LOG };

/** A `logger` option, checked; `undefined` when not given. Its value is never shown: a logger's settings may hold credentials. */
export function checkLogger(value: unknown, option = 'logger'): Logger | undefined {
  if (value === undefined) return undefined;
  const isObject = typeof value === 'object' && value !== null;
  const missing = missingMethods(value);
  if (missing.length === 0) return guarded(value as Logger);
  const got = !isObject ? (value === null ? 'null' : `a ${typeof value}`) : `an object without ${missing.join(', ')}`;
  throw new BellwetherError(ErrorCodes.INVALID_OPTION, `${option} must be a pino-compatible logger (with debug, info, warn, error and child functions), got ${got}`);
}

/** What `value` lacks to be a Logger (all of it when it is no object). */
function missingMethods(value: unknown): (typeof METHODS)[number][] {
  if (typeof value !== 'object' || value === null) return [...METHODS];
  return METHODS.filter((method) => typeof (value as Record<string, unknown>)[method] !== 'function');
}

type Level = Exclude<(typeof METHODS)[number], 'child'>;

/** A logger's four levels, each made by `line`. */
function levels(line: (level: Level) => (fields: object, message?: string) => void): Omit<Logger, 'child'> {
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}

/** Loggers made by `guarded()`: checking one again returns it as it is. */
const GUARDED = new WeakSet<Logger>([NO_LOG]);
/** The loggers given whose failure was told already (one given to several parts: one warning). */
const WARNED = new WeakSet<object>();

/**
 * The user's logger, made safe to call from a state machine: a log call that
 * throws (a sink that is down, a bug in a custom logger) must not stop a
 * worker's restart or a session's reconnect. What it threw is a process
 * warning, once per logger given. A `child()` that throws or returns no
 * logger leaves its bindings in each line's fields instead.
 */
function guarded(logger: Logger, given: object = logger): Logger {
  if (GUARDED.has(logger)) return logger;
  const failed = (err: unknown): void => {
    if (WARNED.has(given)) return;
    WARNED.add(given);
    // What was thrown may not even turn into a string.
    let why = 'something that is not an Error';
    try {
      why = err instanceof Error ? err.message : String(err);
    } catch {}
    process.emitWarning(`bellwether: the logger threw (${why}); its lines are dropped, bellwether goes on`, 'BellwetherWarning');
  };
  const safe: Logger = {
    ...levels((level) => (fields, message) => {
      try {
        logger[level](fields, message);
      } catch (err) {
        failed(err);
      }
    }),
    child: (bindings) => {
      try {
        const child: unknown = logger.child(bindings);
        if (missingMethods(child).length === 0) return guarded(child as Logger, given);
      } catch (err) {
        failed(err);
      }
      return withBindings(safe, bindings);
    },
  };
  GUARDED.add(safe);
  return safe;
}

/** `logger` with `bindings` in every line's fields: a child made by hand. */
function withBindings(logger: Logger, bindings: object): Logger {
  const child: Logger = {
    ...levels((level) => (fields, message) => logger[level]({ ...bindings, ...fields }, message)),
    child: (more) => withBindings(logger, { ...bindings, ...more }),
  };
  GUARDED.add(child);
  return child;
}

/**
 * The same logger with `info` lowered to `debug`: for a part whose owner logs
 * the same change itself (a singleton's Candidate: the singleton logs
 * `elected` and `demoted`; the Candidate's `step-down` stays a warning).
 */
export function quieter(logger: Logger): Logger {
  if (logger === NO_LOG) return NO_LOG;
  return {
    debug: (fields, message) => logger.debug(fields, message),
    info: (fields, message) => logger.debug(fields, message),
    warn: (fields, message) => logger.warn(fields, message),
    error: (fields, message) => logger.error(fields, message),
    child: (bindings) => quieter(logger.child(bindings)),
  };
}

/**
 * An error of a part: to its `error` listeners; without any, to its logger
 * (unless the caller `logged` it already, as a state change); with neither, a
 * process warning, as before loggers: nothing is lost.
 */
export function reportError(
  emitter: { listenerCount(event: 'error'): number; emit(event: 'error', error: BellwetherError): boolean },
  log: Logger,
  error: BellwetherError,
  logged = false,
): void {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', error);
  else if (log === NO_LOG) process.emitWarning(error);
  else if (!logged) log.error({ event: 'error', code: error.code }, `${error.code}: ${error.message}`);
}

const toStderr = (line: string): void => void process.stderr.write(line);

/** `bellwether start`'s default: `bellwether: <message>` per line, as it always printed; debug lines and fields are left out. */
export function lineLogger(write: (line: string) => void = toStderr): Logger {
  const line = (_fields: object, message?: string): void => write(`bellwether: ${message ?? ''}\n`);
  const logger: Logger = { debug() {}, info: line, warn: line, error: line, child: () => logger };
  return logger;
}

/** pino's level numbers: tools that read pino's output (pino-pretty, log shippers) read these lines too. */
const LEVELS = { info: 30, warn: 40, error: 50 } as const;

/**
 * `bellwether start --log-format json`: one JSON object per line, as pino
 * writes them (`level`, `time`, `pid`, `hostname`, the bindings and fields,
 * `msg`), from level info up.
 */
export function jsonLogger(write: (line: string) => void = toStderr, bindings: object = {}): Logger {
  const base = { pid: process.pid, hostname: os.hostname() };
  const at = (level: keyof typeof LEVELS) => (fields: object, message?: string): void =>
    write(`${JSON.stringify({ level: LEVELS[level], time: Date.now(), ...base, ...bindings, ...fields, msg: message }, bigintAsString)}\n`);
  return { debug() {}, info: at('info'), warn: at('warn'), error: at('error'), child: (more) => jsonLogger(write, { ...bindings, ...more }) };
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
