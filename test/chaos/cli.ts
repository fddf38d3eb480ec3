/**
 * npm run chaos [-- --minutes N] [--seed S] [--servers 1|3] [--verbose]
 * Chaos rounds (20 s of faults each) until N minutes have passed; prints the
 * figures, or the seed and what broke (exit code 1). With --servers 3 the
 * ensemble's members are killed and paused too.
 */
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.js';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, seed: { type: 'string' }, verbose: { type: 'boolean', default: false }, servers: { type: 'string', default: '1' } } });
const servers = Number(values.servers);
if (servers !== 1 && servers !== 3) throw new Error(`--servers must be 1 or 3, got ${values.servers}`);
const minutes = Number(values.minutes);
if (!(minutes > 0 && minutes <= 120)) throw new Error(`--minutes must be in (0, 120], got ${values.minutes}`);
const firstSeed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const stopAt = Date.now() + minutes * 60_000;
const faults: Record<string, number> = {};
let rounds = 0;
let terms = 0;
let worstRecovery = 0;
for (let seed = firstSeed; Date.now() < stopAt; seed++) {
  const roundMs = Math.min(20_000, Math.max(5000, stopAt - Date.now()));
  try {
    const report = await runChaos({ faultMs: roundMs, seed, servers, ...(values.verbose ? { log: (line: string) => console.log(`  ${line}`) } : {}) });
    rounds += 1;
    terms += report.terms;
    worstRecovery = Math.max(worstRecovery, report.recoveryMs);
    for (const [kind, n] of Object.entries(report.faults)) faults[kind] = (faults[kind] ?? 0) + n;
    console.log(`round ${rounds} (seed ${seed}): ${Object.values(report.faults).reduce((a, b) => a + b, 0)} faults, ${report.terms} terms, recovered in ${report.recoveryMs} ms`);
  } catch (err) {
    console.error(`chaos FAILED at seed ${seed} (rerun: npm run chaos -- --seed ${seed} --servers ${servers} --minutes 0.34 --verbose)\n${(err as Error).message}`);
    process.exit(1);
  }
}
const total = Object.values(faults).reduce((a, b) => a + b, 0);
console.log(`\nchaos (${servers} server${servers > 1 ? 's' : ''}): ${rounds} rounds, ${total} faults (${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ')}), ${terms} terms (handovers), longest time with no runner after the faults ended: ${worstRecovery} ms`);
