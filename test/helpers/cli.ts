import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { bounded } from './bounded.js';
import { type Runtime, node } from './runtimes.js';
import { SETPRIV } from './tools.js';

/** The built CLI, as `npx bellwether` runs it. */
export const CLI = new URL('../../../dist/cli.js', import.meta.url).pathname;

export interface CliOptions {
  runtime?: Runtime;
  env?: NodeJS.ProcessEnv;
  /**
   * Subject to file permissions as any user is: run as root, the CLI runs
   * without the capabilities that bypass them (setpriv drops
   * CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), keeping its uid, so the
   * files the test made are still its own.
   */
  unprivileged?: boolean;
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `command args` to completion, bounded (`what` names it then; killed if still running): exit code and output. */
export async function runToEnd(
  what: string,
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; ms?: number } = {},
): Promise<Finished> {
  const run = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: options.env ?? process.env });
  let stdout = '';
  let stderr = '';
  run.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  run.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const [code] = (await bounded(what, once(run, 'close'), options.ms ?? 30_000)) as [number | null];
    return { code, stdout, stderr };
  } finally {
    run.kill('SIGKILL');
  }
}

/** `bellwether <args>` to completion (bounded): exit code and output. */
export function bellwether(args: string[], options: CliOptions = {}): Promise<Finished> {
  const command = [(options.runtime ?? node).bin, CLI, ...args];
  if (options.unprivileged && process.getuid?.() === 0) command.unshift(SETPRIV, '--bounding-set', '-dac_override,-dac_read_search', '--');
  return runToEnd(`bellwether ${args[0]}`, command[0]!, command.slice(1), { env: { ...process.env, ...options.env } });
}

/**
 * A failed command as users see it: the exit code, one line on stderr that
 * matches (no stack trace), and nothing on stdout.
 */
export function assertFailure(result: { code: number | null; stdout: string; stderr: string }, exitCode: number, line: RegExp): void {
  const shown = JSON.stringify(result);
  assert.equal(result.code, exitCode, shown);
  assert.match(result.stderr, /^bellwether: [^\n]+\n$/, `one line on stderr: ${shown}`);
  assert.match(result.stderr, line, shown);
  assert.equal(result.stdout, '', shown);
}
