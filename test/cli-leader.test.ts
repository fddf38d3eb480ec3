/**
 * `bellwether leader <name>` against a real ZooKeeper, run as users run it
 * (a child process): the acknowledged leader of elections held by real
 * candidates in this process, no leader, ZooKeeper unreachable, bad input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Candidate, Observer, type ZkSession, singleton } from 'bellwether';
import { assertFailure, bellwether } from './helpers/cli.js';
import { bounded } from './helpers/bounded.js';
import { freePort } from './helpers/ports.js';
import { openSession, startProxy } from './helpers/sessions.js';
import { useZooKeeper } from './helpers/zookeeper.js';

const BALLOT = /^ballot-[0-9a-f]{32}-\d{10}$/;

/** Resolves once the election `name` has an acknowledged leader, as an observer in `zk` sees it. */
async function acknowledged(zk: ZkSession, name: string): Promise<void> {
  const observer = new Observer(zk, name);
  try {
    const seen = new Promise<void>((resolve) => observer.once('leader', () => resolve()));
    await observer.observe();
    await bounded(`${name}'s leader acknowledges`, seen, 10_000);
  } finally {
    observer.close();
  }
}

describe('bellwether leader', () => {
  const zk1 = useZooKeeper();

  test('a cluster singleton leads, a candidate waits: data, token, ballots in order with their sessions (text and --json)', async (t) => {
    const connect = zk1.ensemble.connectString();
    const [leading, waiting] = [openSession(t, connect), openSession(t, connect)];
    await Promise.all([leading.start(), waiting.start()]);
    const job = singleton({ scope: 'cluster', zk: leading, name: 'billing', data: 'host-a', run: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })) });
    t.after(() => job.close());
    await job.start();
    await acknowledged(waiting, 'billing');
    const next = new Candidate(waiting, 'billing', { data: 'host-b' });
    t.after(() => next.close());
    await next.vote();
    const token = job.token!;

    const [text, json] = await Promise.all([bellwether(['leader', 'billing', '--zk', connect]), bellwether(['leader', 'billing', '--zk', connect, '--json'])]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.name, 'billing');
    assert.equal(report.path, '/_zkelection/billing');
    assert.equal(report.leader.session, `0x${leading.sessionId}`);
    assert.equal(report.leader.token, token, "the token the job was given");
    assert.equal(report.leader.data, 'host-a');
    assert.match(report.leader.ballot, BALLOT);
    assert.ok(report.leader.leadingMs >= 0 && report.leader.leadingMs < 60_000, json.stdout);
    assert.ok(Math.abs(Date.parse(report.leader.since) - Date.now()) < 60_000, json.stdout);
    assert.deepEqual(
      report.ballots.map((b: { session: string; data: string; leader: boolean }) => [b.session, b.data, b.leader]),
      [[`0x${leading.sessionId}`, 'host-a', true], [`0x${waiting.sessionId}`, 'host-b', false]],
    );
    assert.equal(report.ballots[0].token, token);
    assert.equal(report.ballots[1].ballot, next.ballot!.split('/').pop());
    assert.ok(report.ballots[0].sequence < report.ballots[1].sequence);

    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stderr, '');
    const lines = text.stdout.split('\n');
    assert.match(lines[0]!, new RegExp(`^billing: led by session 0x${leading.sessionId} for \\d+\\.\\d s \\(acknowledged \\S+Z by ZooKeeper's clock\\), token ${token}$`));
    assert.equal(lines[1], '  data: host-a');
    assert.equal(lines[2], 'ballots in /_zkelection/billing, the lowest leads:');
    assert.match(lines[3]!, new RegExp(`^  leader  ${report.ballots[0].ballot}  session 0x${leading.sessionId}  token ${token}  data host-a$`));
    assert.match(lines[4]!, new RegExp(`^          ${report.ballots[1].ballot}  session 0x${waiting.sessionId}  token \\d+  data host-b$`));
  });

  test('no acknowledged leader (exit code 3): no election, a ballot without an ack, an ack that is not the lowest ballot\'s, nodes no session owns', async (t) => {
    const connect = zk1.ensemble.connectString();
    const [voter, other] = [openSession(t, connect), openSession(t, connect)];
    await Promise.all([voter.start(), other.start()]);
    // Ballots cast by hand, in the recipe's layout: nobody acknowledges them.
    for (const name of ['unacked', 'stale']) {
      await voter.mkdirp(`/_zkelection/${name}`);
      await voter.create(`/_zkelection/${name}/ballot-${'0'.repeat(32)}-`, 'waiting', { mode: 'ephemeral-sequential' });
    }
    // An ack of another session (one whose ballot is gone, its ack not yet): not the leader's.
    await other.create('/_zkelection/stale/leader_ack', 'gone-leader', { mode: 'ephemeral' });
    // A ballot and an ack made persistent (by hand, by another tool): no session owns them (owner 0x0 on both).
    await voter.mkdirp('/_zkelection/persisted');
    await voter.create(`/_zkelection/persisted/ballot-${'0'.repeat(32)}-`, 'by hand', { mode: 'persistent-sequential' });
    await voter.create('/_zkelection/persisted/leader_ack', 'by hand', { mode: 'persistent' });

    const [text, ...runs] = await Promise.all([
      bellwether(['leader', 'stale', '--zk', connect]),
      ...['never', 'unacked', 'stale', 'persisted'].map((name) => bellwether(['leader', name, '--zk', connect, '--json'])),
    ]);
    for (const run of runs) assert.equal(run.code, 3, JSON.stringify(run));
    const reports = runs.map((run) => JSON.parse(run.stdout));
    assert.deepEqual(reports[0], {
      name: 'never',
      path: '/_zkelection/never',
      leader: null,
      reason: "no election at /_zkelection/never (nobody ever voted there: check the name, --root and the connect string's chroot)",
      ballots: [],
    });
    assert.match(reports[1].reason, new RegExp(`^the lowest ballot \\(session 0x${voter.sessionId}\\) has not acknowledged`));
    assert.deepEqual(reports[1].ballots.map((b: { session: string; data: string; leader: boolean }) => [b.session, b.data, b.leader]), [[`0x${voter.sessionId}`, 'waiting', false]]);
    assert.match(reports[2].reason, new RegExp(`^the leader_ack belongs to session 0x${other.sessionId}, the lowest ballot to session 0x${voter.sessionId}`));
    assert.equal(reports[2].leader, null);
    assert.equal(reports[3].reason, 'the leader_ack is not ephemeral: no session owns it, no leader made it');
    assert.deepEqual(reports[3].ballots.map((b: { session: string; leader: boolean }) => [b.session, b.leader]), [['0x0', false]]);

    assert.equal(text.code, 3);
    assert.match(text.stdout, /^stale: no acknowledged leader: the leader_ack belongs to session 0x[0-9a-f]+, .*\nballots in \/_zkelection\/stale, the lowest leads:\n {10}ballot-0{32}-\d{10} {2}session 0x[0-9a-f]+ {2}token \d+ {2}data waiting\n$/);
  });

  test('ZooKeeper unreachable, or silent once the session is open: its own exit code, soon after --timeout; bad input: the usage code, before any connection', async (t) => {
    const connect = `127.0.0.1:${await freePort()}`;
    // A server that opens the session, then never hears another request (a partition right after the handshake).
    const proxy = await startProxy(t, zk1.ensemble.servers[0]!.clientPort);
    const heard = new Set<number>();
    proxy.tap = ({ from, connection }) => {
      if (from === 'server') return 'forward';
      if (heard.has(connection)) return 'discard';
      heard.add(connection);
      return 'forward';
    };
    const started = performance.now();
    const [text, json, silent, ...bad] = await Promise.all([
      bellwether(['leader', 'billing', '--zk', connect, '--timeout', '300']),
      bellwether(['leader', 'billing', '--zk', connect, '--timeout', '300', '--json']),
      // Time enough for the session to open, on a machine busy with the other runs.
      bellwether(['leader', 'billing', '--zk', `127.0.0.1:${proxy.port}`, '--timeout', '1500']),
      bellwether(['leader', 'billing']),
      bellwether(['leader', 'billing', '--zk', 'zk1']),
      bellwether(['leader', '../billing', '--zk', connect]),
      bellwether(['leader', 'billing', '--zk', connect, '--root', 'elections']),
      bellwether(['leader', 'billing', '--zk', connect, '--timeout', 'soon']),
    ]);
    assert.ok(performance.now() - started < 6000, 'no lingering timer or socket keeps the CLI running');
    const unreachable = /^bellwether: BW_ERR_ZK_CONNECT_TIMEOUT: no ZooKeeper session from 127\.0\.0\.1:\d+ within 300 ms: is ZooKeeper running there/;
    assertFailure(text, 68, unreachable);
    assert.equal(json.code, 68);
    assert.equal(JSON.parse(json.stdout).error.code, 'BW_ERR_ZK_CONNECT_TIMEOUT');
    assertFailure(silent, 68, /^bellwether: BW_ERR_ZK_CONNECTION_LOSS: ZooKeeper at 127\.0\.0\.1:\d+ did not answer within 1500 ms: is ZooKeeper running there/);
    const expected = [/BW_ERR_USAGE: leader needs --zk/, /BW_ERR_INVALID_CONNECT_STRING: connect string "zk1"/, /BW_ERR_INVALID_NAME: election name/, /BW_ERR_INVALID_PATH: election root \(--root\) "elections"/, /BW_ERR_INVALID_OPTION: --timeout must be a number/];
    bad.forEach((run, i) => assertFailure(run, 64, expected[i]!));
  });
});
