import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { bounded } from './bounded.js';
import { type Runtime, node } from './runtimes.js';

/** The built CLI, as `npx bellwether` runs it. */
export const CLI = new URL('../../../dist/cli.js', import.meta.url).pathname;

/** `bellwether <args>` to completion (bounded): exit code and output. */
export async function bellwether(args: string[], options: { runtime?: Runtime; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = spawn((options.runtime ?? node).bin, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let stdout = '';
  let stderr = '';
  run.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  run.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const [code] = (await bounded(`bellwether ${args[0]}`, once(run, 'close'), 30_000)) as [number | null];
    return { code, stdout, stderr };
  } finally {
    run.kill('SIGKILL');
  }
}
