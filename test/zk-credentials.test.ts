import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { ErrorCodes, ZkSession } from 'bellwether';
import { Fixtures, startFixture } from './helpers/child.js';
import { RUNTIMES, fixture, node } from './helpers/runtimes.js';
import { expireSession, idBuffer, useZooKeeper } from './helpers/zookeeper.js';

describe('ZooKeeper credentials reach workers over IPC, never in the environment', () => {
  const zk1 = useZooKeeper();
  for (const runtime of RUNTIMES) {
    for (const mode of ['supervisor', 'hook'] as const) {
      test(`${runtime.name}, ${mode === 'supervisor' ? 'Supervisor' : 'installForkHook'}: no password in the worker's /proc/self/environ nor its child's; the worker's session reads a creator-only node, also after an expiry${mode === 'supervisor' ? ' and a restart' : ''}`, async (t) => {
        const password = `pw-${randomUUID()}`;
        const path = `/bw-credentials-${randomUUID()}`;
        const fixtures = new Fixtures();
        t.after(() => fixtures.killAll());
        const primary = fixtures.add(startFixture(runtime, fixture('zk-credentials-primary'), [zk1.ensemble.connectString(), mode, path, password]));

        const seen = await primary.next('environ');
        assert.match(String(seen['environ']), /BELLWETHER_ZK_SETTINGS=/, 'the settings reach the worker');
        assert.ok(!String(seen['environ']).includes(password), "the worker's initial environment holds no password");
        assert.ok(!String(seen['childEnviron']).includes(password), 'nor does the environment of a child it spawns before importing bellwether');
        const { settings, laterChildEnviron } = await primary.next('settings');
        assert.ok(!String(settings).includes(password), 'worker.zkSettings() shows no password');
        assert.ok(!String(laterChildEnviron).includes('BELLWETHER_ZK_SETTINGS'), 'a child spawned after the import gets no settings');

        // Authenticated as the primary: the creator-only ACL lets it read.
        const first = await primary.next('read');
        assert.equal(first['data'], 'for bw-test only', `read: ${String(first['error'])}`);
        const { reads, warnings } = await primary.next('many');
        assert.deepEqual(reads, Array.from({ length: 12 }, () => 'for bw-test only'), 'twelve sessions starting at once each authenticate');
        assert.deepEqual(warnings, [], 'no warning (a listener per request once made Node warn of a leak)');
        const elected = await primary.next('digest-acl');
        assert.deepEqual(elected, { ...elected, leader: true }, "a Candidate whose ACL names the primary's digest id leads");
        const port = zk1.ensemble.servers[0]!.clientPort;
        await expireSession(port, idBuffer(String(first['sessionId'])), Buffer.from(String(first['password']), 'hex'));
        const reopened = await primary.next('read', (e) => e['sessionId'] !== first['sessionId']);
        assert.equal(reopened['data'], 'for bw-test only', `read after the expiry: ${String(reopened['error'])}`);
        if (mode === 'supervisor') {
          primary.send('kill');
          const restarted = await primary.next('read', (e) => e['pid'] !== first['pid']);
          assert.equal(restarted['data'], 'for bw-test only', `read in the restarted worker: ${String(restarted['error'])}`);
        }
        primary.send('stop');
        await primary.next('done');
      });
    }
  }

  test("{ scheme: 'from-primary' } outside a worker: no IPC channel fails at construction; a parent that never answers fails start() within connectTimeout", async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const alone = fixtures.add(startFixture(node, fixture('zk-from-primary-alone'), [zk1.ensemble.connectString()]));
    const refused = await alone.next('failed');
    assert.deepEqual([refused['at'], refused['code']], ['constructor', ErrorCodes.INVALID_OPTION]);

    // Forked with an IPC channel: the parent (this test) never answers.
    const child = fork(fixture('zk-from-primary-alone'), [zk1.ensemble.connectString()], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
    await once(child, 'close');
    const failed = JSON.parse(out) as Record<string, unknown>;
    assert.deepEqual([failed['at'], failed['code']], ['start', ErrorCodes.ZK_CONNECT_TIMEOUT]);
    assert.match(String(failed['message']), /no ZooKeeper credentials from the primary within 300 ms/);
    assert.ok(Number(failed['ms']) >= 290 && Number(failed['ms']) < 2000, `failed after ${String(failed['ms'])} ms`);
  });

  test('auth of the wrong shape fails naming the option, never showing the credentials', () => {
    const secret = 'hunter2-secret';
    const shapes: unknown[] = [
      `bw-test:${secret}`,
      [`bw-test:${secret}`],
      [{ scheme: `bw-test:${secret}` }],
      [{ scheme: 'digest', credentials: [`bw-test:${secret}`] }],
      [{ scheme: 'digest', credentials: `${secret}` }],
    ];
    for (const auth of shapes) {
      assert.throws(
        () => new ZkSession({ connect: '127.0.0.1:2181', auth: auth as never }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, ErrorCodes.INVALID_OPTION);
          assert.match(err.message, /^auth/);
          assert.ok(!err.message.includes(secret), err.message);
          return true;
        },
      );
    }
  });
});
