/**
 * wrk (Debian package `wrk`) as the load: keep-alive connections, each with a
 * request always outstanding, and a connection closed under a request counted
 * as a read error. That is what a reverse proxy or a busy client sees.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { bounded } from './bounded.js';

export interface WrkResult {
  requests: number;
  connect: number;
  read: number;
  write: number;
  timeout: number;
  /** Responses with a status of 400 or more. */
  non2xx: number;
  output: string;
}

export const WRK = '/usr/bin/wrk';

/**
 * `wrk -t2 -c<connections> -d<seconds>s url`, bounded; its counts parsed.
 * `until`: when it settles, wrk is stopped early with SIGINT (it then prints
 * its counts as at the end of a full run).
 */
export async function wrk(url: string, options: { seconds: number; connections?: number; threads?: number; until?: Promise<unknown> }): Promise<WrkResult> {
  const { seconds, connections = 20, threads = 2, until } = options;
  // --timeout: a request slower than this counts as an error; long beside any drain here.
  const run = spawn(WRK, [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  run.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  run.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const interrupt = (): void => void (run.exitCode === null && run.signalCode === null && run.kill('SIGINT'));
  until?.then(interrupt, interrupt);
  try {
    const [code] = (await bounded('wrk', once(run, 'close'), (seconds + 15) * 1000)) as [number | null];
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${output}`);
  } finally {
    run.kill('SIGKILL');
  }
  const requests = /(\d+) requests in/.exec(output);
  if (!requests) throw new Error(`no request count in wrk's output: ${output}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  return {
    requests: Number(requests[1]),
    connect: Number(errors?.[1] ?? 0),
    read: Number(errors?.[2] ?? 0),
    write: Number(errors?.[3] ?? 0),
    timeout: Number(errors?.[4] ?? 0),
    non2xx: Number(non2xx?.[1] ?? 0),
    output,
  };
}

/** The failures a client saw: socket errors of every kind and error responses. */
export function failures(result: WrkResult): { socketErrors: number; non2xx: number } {
  return { socketErrors: result.connect + result.read + result.write + result.timeout, non2xx: result.non2xx };
}
