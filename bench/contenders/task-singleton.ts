/**
 * A process with (or without) one singleton, for the tasks bench. env:
 *   SCOPE         host | cluster | none (no singleton: bellwether loaded, nothing started)
 *   JOB           inline (task-work's run) | task (task-burn.ts) | forever (task-forever.ts)
 *   NAME, LOCK_DIR (host), CONNECT, SESSION_MS, STEP_DOWN_AFTER (cluster), STOP_TIMEOUT, RECORDS, JOB_MS
 * Prints JSON lines { event, t (performance.now() here), ... }: session,
 * started, elected, demoted, ran, expired, suspended, closed, memory;
 * demoted and closed say whether the last task's thread still exists
 * (threadAlive). stdin commands: close, memory.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { type Singleton, ZkSession, singleton } from 'bellwether';
import { runInline } from './task-work.js';

const env = (key: string): string | undefined => process.env[key];
const say = (event: string, fields: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ event, t: performance.now(), ...fields })}\n`);

/** Whether the thread of this process's last task (its tid is in its start record) still exists. */
function taskThreadAlive(): boolean | undefined {
  const file = env('RECORDS');
  if (!file || !fs.existsSync(file)) return undefined;
  const starts = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { kind: string; pid: number; thread: number; tid: number })
    .filter((r) => r.kind === 'start' && r.pid === process.pid && r.thread !== 0);
  const last = starts.at(-1);
  return last === undefined ? undefined : fs.existsSync(`/proc/self/task/${last.tid}`);
}

function memory(): Record<string, number> {
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
}

const scope = env('SCOPE');
const zk = scope === 'cluster' ? new ZkSession({ connect: env('CONNECT')!, sessionTimeout: Number(env('SESSION_MS') ?? 2000) }) : undefined;
zk?.on('connected', ({ sessionId }) => say('session', { sessionId, password: zk.sessionPassword?.toString('hex') }));
zk?.on('expired', () => say('expired'));
zk?.on('suspended', ({ reason }) => say('suspended', { reason }));
zk?.on('error', (err) => say('error', { message: err.message }));

let job: Singleton | undefined;
if (scope !== 'none') {
  const mode = env('JOB');
  const common = {
    name: env('NAME')!,
    ...(mode === 'inline' ? { run: runInline } : { task: new URL(mode === 'forever' ? './task-forever.js' : './task-burn.js', import.meta.url) }),
    ...(mode === 'inline' ? {} : { stopTimeout: Number(env('STOP_TIMEOUT') ?? 1000) }),
    keepAlive: true,
  };
  const stepDownAfter = env('STEP_DOWN_AFTER') === undefined ? {} : { stepDownAfter: Number(env('STEP_DOWN_AFTER')) };
  job = zk ? singleton({ ...common, scope: 'cluster', zk, ...stepDownAfter }) : singleton({ ...common, lockDir: env('LOCK_DIR')! });
  job.on('elected', ({ token }) => say('elected', { token }));
  job.on('demoted', ({ token, reason }) => say('demoted', { token, reason, threadAlive: taskThreadAlive() }));
  job.on('ran', ({ outcome, durationMs }) => say('ran', { outcome, durationMs }));
  job.on('error', (err) => say('error', { message: err.message }));
}

readline.createInterface({ input: process.stdin }).on('line', (command) => {
  if (command === 'memory') say('memory', memory());
  if (command === 'close') {
    const began = performance.now();
    void job?.close().then(async () => {
      say('closed', { ms: performance.now() - began, threadAlive: taskThreadAlive() });
      await zk?.close();
    });
  }
});
await zk?.start();
await job?.start();
say('started');
if (!job) setInterval(() => {}, 2 ** 30);
