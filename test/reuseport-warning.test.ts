/**
 * `bellwether start` under Bun warns once, on stderr, when
 * net.ipv4.tcp_migrate_req is 0 (a stopping worker's queued connections may
 * be reset); not when it is 1, and never under Node. Each run is in its own
 * network namespace (unshare -n, loopback only) with the sysctl set there:
 * the host's is left alone. Needs root (or CAP_SYS_ADMIN) and Linux 5.14+,
 * as CI has: elsewhere each test fails saying so.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { CLI } from './helpers/cli.js';
import { Fixture, Fixtures } from './helpers/child.js';
import { childrenOf, gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const WARNING = /warning: .*tcp_migrate_req.*may be reset during rolling restarts and scale-down.*sysctl -w net\.ipv4\.tcp_migrate_req=1/;

/** Runs `argv` in a new network namespace with loopback up and the sysctl set; exec keeps the pid. */
function inNamespace(migrate: 0 | 1, argv: string[]): [string, string[]] {
  return ['unshare', ['-n', 'sh', '-c', `ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=${migrate} && exec "$0" "$@"`, ...argv]];
}

/** Fails, saying why, when the namespaces cannot be made here. */
function assertCanUnshare(): void {
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1'], { encoding: 'utf8' });
  assert.ok(!probe.error && probe.status === 0, `cannot make a network namespace with net.ipv4.tcp_migrate_req=1 here (needs root and Linux 5.14+): ${probe.error?.message ?? probe.stderr.trim()}`);
}

for (const runtime of RUNTIMES) {
  describe(`bellwether start under ${runtime.name}: the tcp_migrate_req warning`, () => {
    for (const migrate of [0, 1] as const) {
      const warns = runtime.name === 'bun' && migrate === 0;
      test(`net.ipv4.tcp_migrate_req=${migrate}: ${warns ? 'warns once' : 'no warning'}`, async (t) => {
        assertCanUnshare();
        const lockDir = tempDir(t);
        const fixtures = new Fixtures();
        t.after(() => fixtures.killAll());
        const [command, args] = inNamespace(migrate, [runtime.bin, CLI, 'start', fixture('plain-http-app'), '--workers', '1', '--name', 'migrate']);
        // A fresh namespace: any port is free there.
        const primary = fixtures.add(new Fixture(command, args, `${runtime.name} bellwether start (tcp_migrate_req=${migrate})`, { BELLWETHER_LOCK_DIR: lockDir, PORT: '8080' }));
        await bounded('worker ready', primary.stderrMatches(/1 of 1 workers ready/), 20_000);
        const workers = childrenOf(primary.pid);
        killAtEnd(t, workers);
        assert.equal(workers.length, 1, `one worker: ${workers.join(' ')}`);

        primary.child.kill('SIGTERM');
        assert.deepEqual(await bounded('the primary exits', primary.exited, 20_000), { code: 0, signal: null }, primary.stderr);
        assert.deepEqual(await gone(workers, 5000), []);
        const printed = primary.stderr.split('\n').filter((line) => WARNING.test(line));
        assert.equal(printed.length, warns ? 1 : 0, `stderr:\n${primary.stderr}`);
      });
    }
  });
}
