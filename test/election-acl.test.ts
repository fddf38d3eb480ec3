/**
 * ACLs of the election's nodes on a shared ZooKeeper: with digest auth the
 * ballots and leader_ack are the candidates' identity's to change, anyone's
 * to read. Strangers (no credentials, other credentials) can neither delete
 * nor forge them; a candidate without the credentials is refused at once.
 */
import assert from 'node:assert/strict';
import type { Worker } from 'node:cluster';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { type BellwetherError, Candidate, Observer, ZkSession, singleton } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { assertFailure, bellwether } from './helpers/cli.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { openSession, throughProxy } from './helpers/sessions.js';
import { tempDir } from './helpers/temp.js';
import { useZooKeeper } from './helpers/zookeeper.js';

const APP = [{ scheme: 'digest' as const, credentials: 'app:secret' }];
const OTHER = [{ scheme: 'digest' as const, credentials: 'other:secret' }];
const NO_AUTH = { code: 'BW_ERR_ZK_NO_AUTH' };
/** A refusal is one answer from the server: well within this. */
const PROMPT_MS = 2000;
/** ZooKeeper's digest id of credentials 'user:password'. */
const digestOf = (credentials: string): string => `${credentials.split(':')[0]}:${createHash('sha1').update(credentials).digest('base64')}`;

function won(candidate: Candidate): Promise<{ token: number }> {
  return bounded(`${candidate.name}: won`, new Promise((resolve) => candidate.once('won', resolve)), 10_000);
}

describe('election ACLs', () => {
  const zk1 = useZooKeeper();
  const connect = (): string => zk1.ensemble.connectString();

  test('digest auth: strangers cannot delete or forge the ballots or leader_ack; the election goes on; an observer without credentials sees the leader', async (t) => {
    const [a, b, stranger, other] = [openSession(t, connect(), { auth: APP }), openSession(t, connect(), { auth: APP }), openSession(t, connect()), openSession(t, connect(), { auth: OTHER })];
    await Promise.all([a, b, stranger, other].map((zk) => zk.start()));
    const leader = new Candidate(a, 'guarded', { data: 'host-a' });
    const follower = new Candidate(b, 'guarded', { data: 'host-b' });
    t.after(() => Promise.all([leader.close(), follower.close()]));
    const demotions: unknown[] = [];
    leader.on('demoted', (event) => demotions.push(event));
    const elected = won(leader);
    await leader.vote();
    const { token } = await elected;
    await follower.vote();
    // The ack is created a turn after `won`: wait for it as an observer without credentials would.
    const observer = new Observer(stranger, 'guarded');
    t.after(() => observer.close());
    const seen = bounded('the observer sees the leader', new Promise<{ leaderData: Buffer }>((resolve) => observer.once('leader', resolve)), 10_000);
    await observer.observe();
    assert.equal((await seen).leaderData.toString(), 'host-a');

    const { dir, ack } = leader.paths;
    for (const [who, zk] of [['no credentials', stranger], ['other credentials', other]] as const) {
      for (const node of [leader.ballot!, follower.ballot!, ack]) {
        await assert.rejects(zk.delete(node), NO_AUTH, `${who}: delete ${node}`);
        await assert.rejects(zk.set(node, 'forged'), NO_AUTH, `${who}: set ${node}`);
      }
      await assert.rejects(zk.create(`${dir}/ballot-forged-`, 'x', { mode: 'ephemeral-sequential' }), NO_AUTH, `${who}: forge a ballot`);
      await assert.rejects(zk.create(`${dir}/other`), NO_AUTH, `${who}: create in the election`);
      await assert.rejects(zk.delete(dir), NO_AUTH, `${who}: delete the election`);
      // Reading is everyone's.
      assert.equal((await zk.get(ack)).data.toString(), 'host-a');
    }
    await a.sync();
    assert.equal(leader.isLeader, true);
    assert.equal(leader.token, token);
    assert.equal(follower.isLeader, false);
    assert.deepEqual(demotions, []);
    assert.equal(observer.leaderData?.toString(), 'host-a');
    assert.equal((await stranger.children(dir)).length, 3, 'two ballots and the ack, nothing else');

    // The members themselves still hand over: the leader resigns, the follower leads.
    const next = won(follower);
    await leader.close();
    await next;
  });

  test('a candidate without the credentials (none, or others) in an election made by credentialed members: vote() fails with BW_ERR_ZK_NO_AUTH naming the path, promptly, and leaves nothing', async (t) => {
    const [member, stranger, other] = [openSession(t, connect(), { auth: APP }), openSession(t, connect()), openSession(t, connect(), { auth: OTHER })];
    await Promise.all([member.start(), stranger.start(), other.start()]);
    const owner = new Candidate(member, 'members-only');
    t.after(() => owner.close());
    await owner.vote();
    for (const zk of [stranger, other]) {
      const intruder = new Candidate(zk, 'members-only');
      t.after(() => intruder.close());
      const errors: BellwetherError[] = [];
      intruder.on('error', (error) => errors.push(error));
      const began = performance.now();
      await assert.rejects(bounded('the refused vote', intruder.vote(), PROMPT_MS), (err: BellwetherError) => {
        assert.equal(err.code, 'BW_ERR_ZK_NO_AUTH');
        assert.match(err.message, /\/_zkelection\/members-only\/ballot-/);
        assert.match(err.message, /the candidate left the election/);
        return true;
      });
      assert.ok(performance.now() - began < PROMPT_MS);
      // It left for good: voting again says why, and the session's next events try nothing.
      await assert.rejects(intruder.vote(), NO_AUTH);
      assert.deepEqual(errors, [], 'reported once, by vote()');
    }
    const left = (await member.children(owner.paths.dir)).sort();
    assert.deepEqual(left, [owner.ballot!.split('/').pop(), 'leader_ack'].sort(), "only the member's ballot and ack");
    assert.equal(owner.isLeader, true);
  });

  test('a cluster singleton without the credentials: BW_ERR_ZK_NO_AUTH naming the path as its error, once, promptly, and it closes', async (t) => {
    const [member, stranger] = [openSession(t, connect(), { auth: APP }), openSession(t, connect())];
    await Promise.all([member.start(), stranger.start()]);
    const owner = singleton({ scope: 'cluster', zk: member, name: 'guarded-job' });
    t.after(() => owner.close());
    await owner.start();
    await bounded('the member leads', new Promise((resolve) => owner.once('elected', resolve)), 10_000);
    const intruder = singleton({ scope: 'cluster', zk: stranger, name: 'guarded-job', run: () => assert.fail('ran without the credentials') });
    t.after(() => intruder.close());
    const errors: BellwetherError[] = [];
    const refused = new Promise<void>((resolve) => intruder.on('error', (error) => (errors.push(error), resolve())));
    await intruder.start();
    await bounded('the refusal', refused, PROMPT_MS);
    assert.equal(errors[0]!.code, 'BW_ERR_ZK_NO_AUTH');
    assert.match(errors[0]!.message, /\/_zkelection\/guarded-job\/ballot-/);
    await intruder.close();
    assert.equal(intruder.state, 'closed');
    assert.equal(errors.length, 1);
    assert.equal(owner.isLeader, true);
  });

  test("an acl given: 'creator' hides the election from others (bellwether leader exits 77), entries are applied, parents that exist under a parent closed to us are passed", async (t) => {
    const [member, stranger] = [openSession(t, connect(), { auth: APP }), openSession(t, connect())];
    await Promise.all([member.start(), stranger.start()]);
    const hidden = new Candidate(member, 'hidden', { root: '/private', acl: 'creator' });
    t.after(() => hidden.close());
    await hidden.vote();
    await assert.rejects(stranger.children(hidden.paths.dir), NO_AUTH);
    assertFailure(await bellwether(['leader', 'hidden', '--zk', connect(), '--root', '/private']), 77, /^bellwether: BW_ERR_ZK_NO_AUTH: children \/private\/hidden: /);

    // Entries: anyone may read and create (a note of a stranger is fine), only the app may delete.
    const app = { scheme: 'auth' as const, id: '', perms: 'rwcda' };
    const shared = new Candidate(member, 'shared', { root: '/entries', acl: [app, { scheme: 'world', id: 'anyone', perms: 'rc' }] });
    t.after(() => shared.close());
    await shared.vote();
    await stranger.create(`${shared.paths.dir}/note`, '', { mode: 'ephemeral' });
    await assert.rejects(stranger.delete(shared.ballot!), NO_AUTH);
    await assert.rejects(stranger.set(shared.ballot!, 'forged'), NO_AUTH);

    // A stranger's candidate under /locked/open: /locked (the app's, read-only to others) stands, so does
    // /locked/open (open): its mkdirp passes /locked/open (NoAuth from ZooKeeper, which checks the parent first).
    await member.create('/locked', '', { acl: 'creator-read-all' });
    await member.create('/locked/open');
    const below = new Candidate(stranger, 'below', { root: '/locked/open' });
    t.after(() => below.close());
    const elected = won(below);
    await below.vote();
    await elected;
  });

  test("the primary's host ballot: the worker's acl is used; a refusal is sent to the holder", async (t) => {
    const { HostBallots } = (await import(new URL('../../dist/cluster/host-ballots.js', import.meta.url).href)) as {
      HostBallots: new (zk: ZkSession, onError: (error: BellwetherError) => void) => { onMessage(worker: Worker, message: unknown, mayVote: boolean): void; close(): Promise<void> };
    };
    type Sent = { bellwether: string; code?: string; message?: string };
    /** A stand-in for a cluster worker that records what the primary sends it, and waits for a kind of message. */
    const fakeWorker = (): { worker: Worker; next(kind: string, ms: number): Promise<Sent> } => {
      const sent: Sent[] = [];
      const worker = { isConnected: () => true, send: (message: Sent) => (sent.push(message), true) } as unknown as Worker;
      const next = async (kind: string, ms: number): Promise<Sent> => {
        const deadline = performance.now() + ms;
        for (;;) {
          const found = sent.find((m) => m.bellwether === kind);
          if (found) return found;
          if (performance.now() > deadline) throw new Error(`no ${kind} within ${ms} ms`);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      };
      return { worker, next };
    };
    const election = '/_zkelection/host-job';
    const hold = (acl?: unknown) => ({ bellwether: 'fleet-hold', election, name: 'host-job', root: '/_zkelection', data: '', ...(acl ? { acl } : {}), hold: 1, generation: 1 });
    const release = { bellwether: 'fleet-release', election, hold: 1 };
    const [primary, stranger] = [openSession(t, connect(), { auth: APP }), openSession(t, connect())];
    await Promise.all([primary.start(), stranger.start()]);
    const errors: BellwetherError[] = [];

    const host = new HostBallots(primary, (error) => errors.push(error));
    t.after(() => host.close());
    const holder = fakeWorker();
    host.onMessage(holder.worker, hold('creator'), true);
    await holder.next('fleet-lease', 10_000);
    await assert.rejects(stranger.children(election), NO_AUTH, "the worker's acl 'creator'");

    const refusedHost = new HostBallots(stranger, (error) => errors.push(error));
    t.after(() => refusedHost.close());
    const refusedHolder = fakeWorker();
    refusedHost.onMessage(refusedHolder.worker, hold(), true);
    const refusal = await refusedHolder.next('fleet-refused', PROMPT_MS);
    assert.equal(refusal.code, 'BW_ERR_ZK_NO_AUTH');
    assert.match(refusal.message!, /\/_zkelection\/host-job/);
    assert.deepEqual(errors.map((e) => e.code), ['BW_ERR_ZK_NO_AUTH'], 'the primary reports it too');
    // The holders let go: close() need not wait for them.
    host.onMessage(holder.worker, release, true);
    refusedHost.onMessage(refusedHolder.worker, release, true);
  });

  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: host+cluster under a Supervisor whose session has no credentials, in a root made by credentialed members: the worker's singleton is told BW_ERR_ZK_NO_AUTH by the primary, once, and stops`, async (t) => {
      const dir = tempDir(t);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const member = openSession(t, connect(), { auth: APP });
      await member.start();
      await member.mkdirp('/_zkelection', undefined, { acl: 'creator-read-all' });
      const lockDir = path.join(dir, 'host');
      fs.mkdirSync(lockDir, { mode: 0o700 });
      const primary = fixtures.add(startFixture(runtime, fixture('fleet-primary'), [connect(), '4000', lockDir, path.join(dir, 'fence.log'), '1']));
      const started = await primary.next('started');
      killAtEnd(t, started['workers'] as number[]);
      const told = await bounded("the worker's singleton is told", primary.next('job-error'), 10_000);
      assert.equal(told['code'], 'BW_ERR_ZK_NO_AUTH');
      assert.match(String(told['message']), /\/_zkelection\/fleet-job/);
      const reported = await primary.next('error');
      assert.equal(reported['code'], 'BW_ERR_ZK_NO_AUTH', "the primary's own report");
      primary.send('stop');
      await primary.next('stopped');
      assert.equal(primary.count('job-error'), 1);
      assert.equal(primary.count('running'), 0);
    });
  }

  test('the acl option is checked at the boundary', () => {
    const plain = new ZkSession({ connect: '127.0.0.1:1' });
    const authed = new ZkSession({ connect: '127.0.0.1:1', auth: APP });
    const bad: [string, unknown][] = [
      ['an unknown name', 'everyone'],
      ['an empty list', []],
      ['not a list', { scheme: 'world', id: 'anyone', perms: 'r' }],
      ['world but not anyone', [{ scheme: 'world', id: 'me', perms: 'r' }]],
      ['auth with an id', [{ scheme: 'auth', id: 'app', perms: 'r' }]],
      ['digest in clear', [{ scheme: 'digest', id: 'app:secret', perms: 'r' }]],
      ['ip not an address', [{ scheme: 'ip', id: 'example', perms: 'r' }]],
      ['ip with too many bits', [{ scheme: 'ip', id: '10.0.0.0/33', perms: 'r' }]],
      ['an unknown scheme', [{ scheme: 'sasl', id: 'x', perms: 'r' }]],
      ['an unknown permission', [{ scheme: 'world', id: 'anyone', perms: 'rx' }]],
      ['a permission twice', [{ scheme: 'world', id: 'anyone', perms: 'rr' }]],
      ['no permission', [{ scheme: 'world', id: 'anyone', perms: '' }]],
      ['an unknown key', [{ scheme: 'world', id: 'anyone', perms: 'r', extra: 1 }]],
    ];
    for (const [what, acl] of bad) {
      assert.throws(() => new Candidate(authed, 'x', { acl: acl as never }), { code: 'BW_ERR_INVALID_OPTION' }, `Candidate: ${what}`);
      assert.throws(() => singleton({ scope: 'cluster', zk: authed, name: 'x', acl: acl as never }), { code: 'BW_ERR_INVALID_OPTION' }, `singleton: ${what}`);
    }
    assert.throws(() => new Candidate(authed, 'x', { acl: [{ scheme: 'digest', id: 'app:secret', perms: 'r' }] }), (err: Error) => !err.message.includes('secret'));
    for (const acl of ['creator', 'creator-read-all', [{ scheme: 'auth', id: '', perms: 'r' }]] as const) {
      assert.throws(() => new Candidate(plain, 'x', { acl }), /needs a session with digest auth/, `${JSON.stringify(acl)} without auth`);
      assert.throws(() => singleton({ scope: 'cluster', zk: plain, name: 'x', acl }), { code: 'BW_ERR_INVALID_OPTION' });
    }
    assert.throws(() => singleton({ name: 'x', acl: 'open' } as never), { code: 'BW_ERR_INVALID_OPTION' }, "unset with scope 'host'");
    // Good ones are taken.
    const app = { scheme: 'auth', id: '', perms: 'rcd' } as const;
    for (const acl of ['open', 'creator', 'creator-read-all', [app], [{ scheme: 'digest', id: digestOf('app:secret'), perms: 'rwcda' }], [{ scheme: 'ip', id: '127.0.0.1/8', perms: 'r' }, app]] as const) {
      new Candidate(authed, 'x', { acl });
      singleton({ scope: 'cluster', zk: authed, name: 'x', acl });
    }
    new Candidate(plain, 'x', { acl: [{ scheme: 'world', id: 'anyone', perms: 'rcd' }] });
  });

  test("an election's acl must let the session's own identity read, create and delete (r, c, d): refused at the boundary otherwise", async () => {
    const authed = new ZkSession({ connect: '127.0.0.1:1', auth: APP });
    const all = (scheme: 'auth' | 'ip' | 'digest', id: string, perms = 'rwcda') => ({ scheme, id, perms });
    const bad: [string, unknown, RegExp][] = [
      // The leader could not delete its ballot on close(), nor could the parents it made be written by anyone again.
      ["'read-only'", 'read-only', /^acl 'read-only' must let .* create \(cast a ballot\), nor delete/],
      ["no 'd' for the creator", [all('auth', '', 'rwca'), { scheme: 'world', id: 'anyone', perms: 'r' }], /it does not let it delete \(take its ballot and leader_ack away on close\(\)/],
      ["no 'r'", [all('auth', '', 'wcda')], /it does not let it read/],
      ["'ip' only (says nothing of the identity)", [all('ip', '127.0.0.1')], /'ip' entries do not count/],
      ['the digest of other credentials', [all('digest', digestOf('other:secret'))], /must let the session's own identity read, create and delete/],
    ];
    for (const [what, acl, message] of bad) {
      assert.throws(() => new Candidate(authed, 'x', { acl: acl as never }), { code: 'BW_ERR_INVALID_OPTION', message }, `Candidate: ${what}`);
      assert.throws(() => singleton({ scope: 'cluster', zk: authed, name: 'x', acl: acl as never }), { code: 'BW_ERR_INVALID_OPTION', message }, `singleton: ${what}`);
    }
    // Outside an election, a node may be made read-only.
    await assert.rejects(authed.create('/frozen', '', { acl: 'read-only' }), /ZkSession is not started/);
  });

  test('acl names that are Object.prototype keys, and create modes, fail at the boundary; acl values are never printed (they may hold a password)', async () => {
    const authed = new ZkSession({ connect: '127.0.0.1:1', auth: APP });
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      assert.throws(() => new Candidate(authed, 'x', { acl: name as never }), { code: 'BW_ERR_INVALID_OPTION' }, `acl ${name}`);
      await assert.rejects(authed.create('/x', '', { acl: name as never }), { code: 'BW_ERR_INVALID_OPTION', message: /^create acl must be/ }, `create acl ${name}`);
      await assert.rejects(authed.create('/x', '', { mode: name as never }), { code: 'BW_ERR_INVALID_OPTION', message: /^create mode must be/ }, `create mode ${name}`);
    }
    const secrets: unknown[] = [
      'digest:app:secret:cdrwa',
      ['digest:app:secret'],
      { 'app:secret': 'cdrwa' },
      [{ scheme: 'auth', id: 'app:secret', perms: 'rwcda' }],
      [{ scheme: 'world', id: 'app:secret', perms: 'r' }],
      [{ scheme: 'ip', id: 'app:secret', perms: 'r' }],
      [{ scheme: 'digest:app:secret', id: '', perms: 'r' }],
      [{ scheme: 'world', id: 'anyone', perms: 'app:secret' }],
    ];
    for (const acl of secrets) {
      const hidden = (err: Error): boolean => (err as BellwetherError).code === 'BW_ERR_INVALID_OPTION' && !err.message.includes('secret');
      assert.throws(() => new Candidate(authed, 'x', { acl: acl as never }), hidden, JSON.stringify(acl));
      await assert.rejects(authed.create('/x', '', { acl: acl as never }), hidden, JSON.stringify(acl));
    }
  });

  test("the least an election's acl may grant (r, c, d to the identity, r to others) is enough: the leader's close() hands over", async (t) => {
    const [a, b] = [openSession(t, connect(), { auth: APP }), openSession(t, connect(), { auth: APP })];
    await Promise.all([a.start(), b.start()]);
    const acl = [
      { scheme: 'auth' as const, id: '', perms: 'rcd' },
      { scheme: 'world' as const, id: 'anyone', perms: 'r' },
    ];
    const leader = new Candidate(a, 'least', { root: '/least', acl });
    const follower = new Candidate(b, 'least', { root: '/least', acl });
    t.after(() => Promise.all([leader.close(), follower.close()]));
    const first = won(leader);
    await leader.vote();
    await first;
    await follower.vote();
    const next = won(follower);
    await leader.close();
    await next;
  });

  test('a write issued while the connection is down goes out after the re-sent credentials once it is back (not refused as from no identity), and gives up after the session and connect timeouts', async (t) => {
    const { proxy, zk } = await throughProxy(t, zk1.ensemble.servers[0]!.clientPort, { auth: APP, sessionTimeout: 1000, connectTimeout: 500 });
    await zk.start();
    await zk.create('/guarded', '', { acl: 'creator-read-all' });
    const suspended = (): Promise<unknown> => bounded('suspended', new Promise((resolve) => zk.once('suspended', resolve)), 5000);
    let down = suspended();
    proxy.drop();
    await down;
    // node-zookeeper-client would send these on reconnecting ahead of the credentials.
    const created = zk.create('/guarded/child', 'x', { acl: 'creator-read-all' });
    const committed = zk.transaction().create('/guarded/multi').commit();
    await bounded('the create and the transaction', Promise.all([created, committed]), 5000);

    // Not back: the write fails as a lost connection after sessionTimeout + connectTimeout (1.5 s), not never.
    down = suspended();
    proxy.tap = () => 'cut';
    proxy.drop();
    await down;
    const began = performance.now();
    await assert.rejects(bounded('the write that waits', zk.create('/guarded/late'), 5000), { code: 'BW_ERR_ZK_CONNECTION_LOSS' });
    assert.ok(performance.now() - began >= 1400, 'waited for the connection');
  });
});
