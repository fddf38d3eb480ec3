/**
 * npm run bench [-- suite ...] [--quick]
 * Runs each suite side by side with the alternatives and prints a table.
 * --quick runs a tenth of the samples (a smoke run, not for quoting).
 */
import { election } from './election.js';
import { fleetBench } from './fleet.js';
import { handover } from './handover.js';
import { hostFailover, threadpool } from './host-failover.js';
import { hostFleet } from './host-fleet.js';
import { supervisorBench } from './supervisor.js';
import { zkSession } from './zk-session.js';
import { adapters } from './adapters.js';
import { metricsFlood } from './metrics-flood.js';
import { restarts } from './restarts.js';
import { reuseport } from './reuseport.js';
import { tasks } from './tasks.js';

const SUITES: Record<string, (scale: number) => Promise<string>> = {
  'host-failover': hostFailover,
  threadpool,
  'zk-session': zkSession,
  adapters,
  'metrics-flood': metricsFlood,
  election,
  fleet: fleetBench,
  handover,
  'host-fleet': hostFleet,
  supervisor: supervisorBench,
  restarts,
  reuseport,
  tasks,
};

const args = process.argv.slice(2);
const scale = args.includes('--quick') ? 0.1 : 1;
const chosen = args.filter((a) => !a.startsWith('--'));
for (const name of chosen) {
  if (!SUITES[name]) throw new Error(`unknown suite ${name}; known: ${Object.keys(SUITES).join(', ')}`);
}
console.log(`bellwether benchmarks on ${process.platform} ${process.arch}, Node ${process.version}, ${(await import('node:os')).cpus().length} cores`);
for (const name of chosen.length ? chosen : Object.keys(SUITES)) {
  console.log(await SUITES[name]!(scale));
}
