import { BellwetherError, ErrorCodes } from './errors.js';

const NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** Names become file names and ZooKeeper path segments: keep them boring. */
export function checkName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '.' || name === '..') {
    throw new BellwetherError(
      ErrorCodes.INVALID_NAME,
      `${what} must match [A-Za-z0-9._-]{1,128} and not be "." or "..", got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export function invalidOption(option: string, expected: string, got: unknown): BellwetherError {
  let shown: string;
  try {
    shown = typeof got === 'function' ? 'a function' : JSON.stringify(got) ?? String(got);
  } catch {
    shown = String(got);
  }
  return new BellwetherError(ErrorCodes.INVALID_OPTION, `${option} must be ${expected}, got ${shown}`);
}

/** The same error for a value that may hold a secret (credentials): it names the value's type only. */
export function invalidSecretOption(option: string, expected: string, got: unknown): BellwetherError {
  const type = got === null ? 'null' : Array.isArray(got) ? 'an array' : `a ${typeof got}`;
  return new BellwetherError(ErrorCodes.INVALID_OPTION, `${option} must be ${expected}, got ${type} (hidden)`);
}

export function checkObject(value: unknown, option: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidOption(option, 'an object', value);
  }
  return value as Record<string, unknown>;
}

export function checkFunction<T extends (...args: never[]) => unknown>(value: unknown, option: string): T {
  if (typeof value !== 'function') throw invalidOption(option, 'a function', value);
  return value as T;
}

/** An integer number of milliseconds (or of `unit`) in [min, max]; `undefined` gives the default. */
export function checkMillis(value: unknown, option: string, fallback: number, min = 0, max = 2 ** 31 - 1, unit = 'milliseconds'): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidOption(option, `an integer number of ${unit} from ${min} to ${max}`, value);
  }
  return value;
}

/** Rejects keys the caller did not mean to pass: a typo should not silently become a default. */
export function checkKnownKeys(options: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new BellwetherError(
        ErrorCodes.INVALID_OPTION,
        `${where}: unknown option ${JSON.stringify(key)} (known: ${known.join(', ')})`,
      );
    }
  }
}
