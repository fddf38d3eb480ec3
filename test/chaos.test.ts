/**
 * The short chaos run of `npm test` (the long one: `npm run chaos -- --minutes N [--servers 3]`):
 * 10 s of random faults (connections dropped, blackholed or delayed, the
 * server paused, followers' sessions expired, contenders SIGKILLed) against
 * Node and Bun contenders in `cluster` and `host+cluster` scope. Never two
 * runs at once, tokens increasing; once the faults end, one runner that
 * leader_ack and both observers name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChaos } from './chaos/chaos.js';

test('chaos: 10 s of faults, safety throughout and one acknowledged runner after', async (t) => {
  const seed = Math.floor(Math.random() * 2 ** 31);
  t.diagnostic(`seed ${seed} (again: npm run chaos -- --seed ${seed} --minutes 0.17 --verbose)`);
  const report = await runChaos({ faultMs: 10_000, seed });
  t.diagnostic(JSON.stringify(report));
  assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 5, 'faults were injected');
  assert.ok(report.terms >= 1);
});
