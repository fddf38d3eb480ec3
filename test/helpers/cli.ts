import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { bounded } from './bounded.js';
import { type Runtime, node } from './runtimes.js';

/** The built CLI, as `npx bellwether` runs it. */
export const CLI = new URL('../../../dist/cli.js', import.meta.url).pathname;

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
export function bellwether(args: string[], options: { runtime?: Runtime; env?: NodeJS.ProcessEnv } = {}): Promise<Finished> {
  return runToEnd(`bellwether ${args[0]}`, (options.runtime ?? node).bin, [CLI, ...args], { env: { ...process.env, ...options.env } });
}
