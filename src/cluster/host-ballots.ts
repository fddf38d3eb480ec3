import type { Worker } from 'node:cluster';
import { Candidate } from '../election/candidate.js';
import { stepDownDeadline } from '../election/step-down.js';
import type { BellwetherError } from '../errors.js';
import { isRefusal } from '../zk/zk-errors.js';
import { type Logger, NO_LOG } from '../log/logger.js';
import { settledWithin } from '../singleton/abort.js';
import type { ZkSession } from '../zk/session.js';
import type { FleetMessage } from './protocol.js';

/**
 * How long the host keeps its ballot once no worker holds the host lock (the
 * holder released it or died). A sibling waiting on the lock takes it within
 * milliseconds, so the fleet term stays. Once nobody has taken it (no sibling
 * runs the singleton, or an operator holds the lock with flock(1) to pause
 * the job here) the ballot goes and the fleet moves on: only a host where a
 * worker holds the lock stands in the election.
 */
export const HANDOVER_GRACE_MS = 1000;

type Hold = Extract<FleetMessage, { bellwether: 'fleet-hold' }>;

/**
 * The primary's side of `host+cluster` under a Supervisor with `zk`: per
 * election, one ballot for the host in the primary's session, held while a
 * worker holds the host lock (and for a grace after), and a lease for that
 * worker, renewed while the host leads.
 */
export class HostBallots {
  readonly #zk: ZkSession;
  readonly #onError: (error: BellwetherError) => void;
  /** The supervisor's: each ballot's Candidate logs its elected, demoted and step-down there. */
  readonly #log: Logger;
  readonly #ballots = new Map<string, HostBallot>();

  constructor(zk: ZkSession, onError: (error: BellwetherError) => void, log: Logger = NO_LOG) {
    this.#zk = zk;
    this.#onError = onError;
    this.#log = log;
  }

  /** `mayVote`: false while the supervisor stops (no new term begins on a leaving host). */
  onMessage(worker: Worker, message: FleetMessage, mayVote: boolean): void {
    if (message.bellwether === 'fleet-hold') {
      let ballot = this.#ballots.get(message.election);
      if (!ballot) this.#ballots.set(message.election, (ballot = new HostBallot(this.#zk, message.election, this.#onError, this.#log)));
      ballot.hold(worker, message, mayVote);
    } else if (message.bellwether === 'fleet-release') {
      this.#ballots.get(message.election)?.letGo(worker, message.hold, mayVote);
    }
  }

  /** The worker exited: whatever it held is free (its flock went with it). */
  forget(worker: Worker, mayVote = true): void {
    for (const ballot of this.#ballots.values()) ballot.letGo(worker, undefined, mayVote);
  }

  /** Once the workers are gone: every ballot resigns. */
  async close(): Promise<void> {
    await Promise.all([...this.#ballots.values()].map((ballot) => ballot.close()));
    this.#ballots.clear();
  }
}

/** One election the host stands in. */
class HostBallot {
  readonly #zk: ZkSession;
  readonly #election: string;
  readonly #onError: (error: BellwetherError) => void;
  readonly #log: Logger;
  #candidate: Candidate | undefined;
  #stepDownAfter: number | undefined;
  /** The worker holding the host lock, which of its holdings, and the lock's generation it holds. */
  #holder: { worker: Worker; hold: number; generation: number } | undefined;
  /**
   * Every holding granted a lease in this term that has not let go, with the
   * time its last lease ends at the latest: a stale hold (messages of two
   * workers are not ordered) must not leave a lease running unrevoked.
   */
  readonly #leased = new Map<Worker, { hold: number; until: number }>();
  /** Holds that looked older than the holder's: kept, in case the lock file was made anew (generations start again). */
  readonly #waiting = new Map<Worker, Hold>();
  /** While the candidate leads: its term and the session it won in (a lease is good only while that session lasts). */
  #term: { token: number; session: string } | undefined;
  #grace: NodeJS.Timeout | undefined;
  /** While the ballot stands: renews the holder's lease, and notices when this process was frozen. */
  #ticker: NodeJS.Timeout | undefined;
  /** performance.now() of the last tick. */
  #lastTick = 0;
  /**
   * False after a freeze (SIGSTOP, a blocked loop) until a request sent after
   * it has been answered: an answer that waited in the socket meanwhile makes
   * the session's silence look short, and says nothing of now.
   */
  #fresh = true;
  #confirming = false;
  #closed = false;
  /** close() waits for the holder to let go. */
  #holderGone: (() => void) | undefined;

  constructor(zk: ZkSession, election: string, onError: (error: BellwetherError) => void, log: Logger) {
    this.#zk = zk;
    this.#election = election;
    this.#onError = onError;
    this.#log = log;
  }

  hold(worker: Worker, message: Hold, mayVote: boolean): void {
    if (this.#closed) return;
    // Messages of two workers are not ordered: a hold of an older generation than the current
    // holder's is one that has ended already (the flock went to the newer holder after it).
    const current = this.#holder;
    if (current && current.worker !== worker && message.generation < current.generation) {
      // Either ended already (its release follows) or of a lock file made anew: it gets its turn
      // once the current holder lets go, if it has not let go itself by then.
      this.#waiting.set(worker, message);
      return;
    }
    this.#waiting.delete(worker);
    this.#holder = { worker, hold: message.hold, generation: message.generation };
    clearTimeout(this.#grace);
    this.#grace = undefined;
    if (!this.#candidate && mayVote) this.#vote(message);
    this.#sendLease();
  }

  /** The holder released the host lock (`hold` given) or exited: the ballot stays for the grace. */
  letGo(worker: Worker, hold?: number, mayVote = true): void {
    const leased = this.#leased.get(worker);
    if (leased && (hold === undefined || hold === leased.hold)) this.#leased.delete(worker);
    const waiting = this.#waiting.get(worker);
    if (waiting && (hold === undefined || hold === waiting.hold)) this.#waiting.delete(worker);
    const holder = this.#holder;
    if (!holder || holder.worker !== worker || (hold !== undefined && hold !== holder.hold)) return;
    this.#holder = undefined;
    this.#holderGone?.();
    const [next] = [...this.#waiting].filter(([w]) => w.isConnected());
    if (next && !this.#closed) {
      this.#waiting.delete(next[0]);
      return this.hold(next[0], next[1], mayVote);
    }
    if (this.#closed || !this.#candidate) return;
    this.#grace = setTimeout(() => void this.#resign(), HANDOVER_GRACE_MS);
  }

  /**
   * Resigns once nobody runs the job under this ballot: a holder still there
   * is told to stop, and waited for until it lets go, or at most until its
   * lease has run out (it then stops by itself).
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#grace);
    clearInterval(this.#ticker);
    if (this.#holder) {
      const gone = new Promise<void>((resolve) => (this.#holderGone = resolve));
      this.#send({ bellwether: 'fleet-revoke', election: this.#election, hold: this.#holder.hold });
      await settledWithin(this.#deadline(), gone);
    }
    await this.#resign();
    // A resign begun by the grace may still be waiting out a lease, its ballot standing.
    await Promise.all([...this.#resigning]);
  }

  #vote(message: Hold): void {
    this.#stepDownAfter = message.stepDownAfter;
    let candidate: Candidate;
    try {
      candidate = new Candidate(this.#zk, message.name, {
        root: message.root,
        data: Buffer.from(message.data, 'base64'),
        // The host needs won and demoted only: no read of, and no watch on, leader_ack (no herd).
        reportLost: false,
        ...(message.stepDownAfter === undefined ? {} : { stepDownAfter: message.stepDownAfter }),
        // The worker's singleton's, if it gave one; else the default by this (the primary's) session's auth.
        ...(message.acl === undefined ? {} : { acl: message.acl }),
        logger: this.#log,
      });
    } catch (err) {
      // An acl this session cannot use (the worker checked it against the same settings: not expected).
      return this.#refused(err as BellwetherError);
    }
    const onError = (error: BellwetherError): void => (isRefusal(error.code) ? this.#refused(error, candidate) : this.#onError(error));
    candidate.on('error', onError);
    candidate.on('won', ({ token }) => {
      // Emitted only while connected in the session the winning ballot belongs to.
      this.#term = { token, session: this.#zk.sessionId! };
      this.#sendLease();
    });
    candidate.on('demoted', () => {
      this.#term = undefined;
      this.#revokeAll();
    });
    this.#candidate = candidate;
    void candidate.vote().catch(onError);
    this.#lastTick = performance.now();
    this.#ticker = setInterval(() => this.#sendLease(), this.#period());
    this.#ticker.unref();
  }

  /**
   * ZooKeeper refused the host's ballot (the election's ACL, the credentials)
   * or its acl: the holder is told, and stops contending; the candidate has
   * left the election. A later hold votes anew.
   */
  #refused(error: BellwetherError, candidate?: Candidate): void {
    this.#onError(error);
    if (candidate && this.#candidate !== candidate) return;
    this.#candidate = undefined;
    this.#term = undefined;
    clearInterval(this.#ticker);
    this.#revokeAll();
    if (this.#holder) this.#send({ bellwether: 'fleet-refused', election: this.#election, hold: this.#holder.hold, code: error.code, message: error.message });
  }

  /** Resigns under way (one may still wait out a lease): close() waits for them too. */
  readonly #resigning = new Set<Promise<void>>();

  #resign(): Promise<void> {
    const resign = this.#resignNow().finally(() => this.#resigning.delete(resign));
    this.#resigning.add(resign);
    return resign;
  }

  async #resignNow(): Promise<void> {
    const candidate = this.#candidate;
    this.#candidate = undefined;
    this.#term = undefined;
    clearInterval(this.#ticker);
    // A lease still out (a holding we heard of out of order) is revoked, and waited out: the next
    // host must not lead while a worker here may still run the job.
    const until = this.#revokeAll();
    const wait = until - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await candidate?.close();
  }

  /** Tells every worker leased in this term to stop; resolves to when their last lease ends at the latest. */
  #revokeAll(): number {
    let until = 0;
    for (const [worker, { hold, until: end }] of this.#leased) {
      this.#sendTo(worker, { bellwether: 'fleet-revoke', election: this.#election, hold });
      until = Math.max(until, end);
    }
    this.#leased.clear();
    return until;
  }

  /** Every eighth of the deadline (and at once on a hold or a win): the holder's lease, unless this process was frozen. */
  #sendLease(): void {
    if (this.#candidate && !this.#frozen()) this.#grant();
  }

  /** A gap between ticks: frozen (SIGSTOP, a blocked loop). Leases wait for a fresh answer (a round trip sent now). */
  #frozen(): boolean {
    const now = performance.now();
    if (now - this.#lastTick > 2 * this.#period() + 20) this.#fresh = false;
    this.#lastTick = now;
    if (!this.#fresh && !this.#confirming) {
      this.#confirming = true;
      void this.#zk.exists(this.#election).then(
        () => {
          this.#confirming = false;
          this.#fresh = true;
          this.#grant();
        },
        // Connection trouble or an expiry: the session's own events follow; the next tick asks again.
        () => void (this.#confirming = false),
      );
    }
    return !this.#fresh;
  }

  #period(): number {
    return Math.max(5, Math.floor(this.#deadline() / 8));
  }

  /**
   * The lease lasts until the step-down deadline, counted from the server's
   * last answer. Not renewed when the session is not the one the term was won
   * in, or is not connected: the worker's lease then runs out by itself.
   */
  #grant(): void {
    const holder = this.#holder;
    const term = this.#term;
    const zk = this.#zk;
    if (!holder || !term || zk.state !== 'connected' || zk.sessionId !== term.session) return;
    const remaining = this.#deadline() - zk.silence();
    if (remaining <= 0) return;
    this.#leased.set(holder.worker, { hold: holder.hold, until: performance.now() + remaining });
    this.#send({ bellwether: 'fleet-lease', election: this.#election, hold: holder.hold, term: String(term.token), remaining, sentAt: Date.now() });
  }

  #deadline(): number {
    // The Candidate's own deadline: the workers' lease ends there too, counted from the server's last answer.
    return stepDownDeadline(this.#zk.timeout ?? this.#zk.settings().sessionTimeout, this.#stepDownAfter).used;
  }

  #send(message: FleetMessage): void {
    const worker = this.#holder?.worker;
    if (worker) this.#sendTo(worker, message);
  }

  #sendTo(worker: Worker, message: FleetMessage): void {
    if (!worker.isConnected()) return;
    try {
      worker.send(message, undefined, () => {});
    } catch {
      // closed in between: its exit lets go
    }
  }
}
