/**
 * The supervisor bench's bellwether primary: a Supervisor and nothing else
 * (test/fixtures/supervisor-primary loads pino and test hooks besides, which
 * would count in its memory). argv: JSON of the Supervisor options. Prints
 * JSON lines: {"event":"ready","index":i,"workerPid":<pid>} when a worker is
 * ready, {"event":"restarted"} after a rolling restart, {"event":"error",...}.
 * SIGTERM stops it gracefully (the Supervisor's own handler); stdin keeps it up.
 */
import { Supervisor } from 'bellwether';

const options = JSON.parse(process.argv[2] ?? '{}') as ConstructorParameters<typeof Supervisor>[0];
const line = (fields: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(fields)}\n`);

const supervisor = new Supervisor({ controlSocket: false, ...options });
supervisor.on('ready', (slot) => line({ event: 'ready', index: slot.index, workerPid: slot.pid }));
supervisor.on('restarted', () => line({ event: 'restarted' }));
supervisor.on('error', (err) => line({ event: 'error', code: err.code, message: err.message }));
supervisor.on('stopped', () => process.exit(0));
process.stdin.resume();
await supervisor.start();
