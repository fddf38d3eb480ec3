import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { type Logger, NO_LOG, checkLogger, reportError } from '../log/logger.js';
import { settledWithin } from '../singleton/abort.js';
import { checkPath, joinPath } from '../zk/paths.js';
import type { NodeChange, ZkSession } from '../zk/session.js';
import type { Stat } from '../zk/stat.js';
import { type Acl, checkElectionAcl } from '../zk/acl.js';
import { isConnectionTrouble, isGoneAnyway, isRefusal } from '../zk/zk-errors.js';
import { type ElectionPaths, ballotPrefix, electionPaths, standingOf } from './ballots.js';
import { stepDownDeadline } from './step-down.js';

export type CandidateDemotion = 'suspended' | 'expired' | 'resigned' | 'superseded';

export interface CandidateEvents {
  /** This candidate leads; the leader_ack is created once the listeners ran and what they started had a turn. */
  won: (event: { token: number }) => void;
  /** Another candidate leads and has acknowledged (its ack data). */
  lost: (event: { leaderData: Buffer }) => void;
  /** This candidate stopped being leader. */
  demoted: (event: { token: number; reason: CandidateDemotion }) => void;
  error: (error: BellwetherError) => void;
}

export interface CandidateOptions {
  /** Data of the ballot and of the leader_ack when this candidate leads. */
  data?: Buffer | string;
  /** Parent of the election directories. Default `/_zkelection`. */
  root?: string;
  /**
   * Step down when the server has not answered for this long (ms), measured
   * from its last answer. Default: half the negotiated session timeout, so
   * that stepping down completes well before the server could expire the
   * session and let another candidate lead.
   */
  stepDownAfter?: number;
  /**
   * Emit `lost` once the leader has acknowledged (the seed's rule). Default
   * true. With false, a losing candidate never reads or watches leader_ack:
   * a request fewer per check, and no watch on the ack that a failover
   * would fire (at a fleet's simultaneous start, most candidates look for
   * the ack before it exists and would each keep such a watch). Singletons
   * use false: they only need `won` and `demoted`.
   */
  reportLost?: boolean;
  /** Logs `elected`, `demoted` (with its reason) and `step-down`, each with `{ election: name }`. Default: none. */
  logger?: Logger;
  /**
   * ACL of the nodes this candidate creates (the election's parents, its
   * ballot, leader_ack): a named ACL or a list of entries (see `Acl`).
   * Default: `'creator-read-all'` when the session has `auth` (only that
   * identity may change them, anyone may read them), else `'open'`. It must
   * let the session's own identity read, create and delete (r, c, d) there.
   */
  acl?: Acl;
}

type State = 'latent' | 'voting' | 'closed';

/**
 * A candidate in the seed's election: an ephemeral-sequential ballot under
 * `<root>/<name>`, the lowest leads, each watches only its predecessor.
 */
export class Candidate extends EventEmitter<CandidateEvents> {
  readonly name: string;
  readonly paths: ElectionPaths;
  readonly #zk: ZkSession;
  readonly #data: Buffer;
  readonly #stepDownAfter: number | undefined;
  readonly #reportLost: boolean;
  readonly #acl: Acl;
  readonly #marker = randomUUID().replaceAll('-', '');
  #state: State = 'latent';
  #ballot: string | undefined;
  #ballotSession: string | undefined;
  /** From the watch on our own ballot: its czxid is the token when it leads, without asking again. */
  #ballotCzxid: bigint | undefined;
  /** Our ballot while its watch is set (not after the watch was spent or its request failed). */
  #ownWatched: string | undefined;
  #leaderToken: number | undefined;
  /** This candidate created the current leader_ack (several candidates may share one session). */
  #acked = false;
  /** The session the ack was created in: an ack of an expired session is gone with it. */
  #ackedIn: string | undefined;
  /** The session in which an ack create lost its answer: it may have been applied, and then it is ours. */
  #ackUnsureIn: string | undefined;
  #reportedLeader: bigint | undefined;
  #watchedPredecessor: string | undefined;
  /** The watched predecessor was the lowest ballot at the last look: once it is deleted, ours is the lowest. */
  #predecessorLowest = false;
  /** That lowest predecessor was deleted since: the next check leads without listing the ballots. */
  #leaderGone = false;
  /** The ballot below our predecessor, watched too: when it goes, we learn where we stand before our turn comes. */
  #watchedGrand: string | undefined;
  /** Grows at each suspension, expiry and new ballot: a watch set before says nothing about the order of what followed. */
  #epoch = 0;
  #watchingAck = false;
  #checking: Promise<void> | undefined;
  #checkAgain = false;
  #monitor: NodeJS.Timeout | undefined;
  #warnedDeadline: string | undefined;
  /** ZooKeeper refused us (NoAuth, InvalidACL, AuthFailed): the candidate left the election for good. */
  #failure: BellwetherError | undefined;
  /** vote() waits for its first check: a refusal there rejects vote() instead of being emitted. */
  #voteWaiting = false;
  readonly #unsubscribe: (() => void)[] = [];
  readonly #log: Logger;

  constructor(zk: ZkSession, name: string, options: CandidateOptions = {}) {
    super();
    this.#zk = zk;
    this.name = name;
    this.paths = electionPaths(checkPath(options.root ?? '/_zkelection', 'election root'), name);
    this.#data = typeof options.data === 'string' ? Buffer.from(options.data) : (options.data ?? Buffer.alloc(0));
    this.#stepDownAfter = options.stepDownAfter;
    this.#reportLost = options.reportLost ?? true;
    this.#acl = checkElectionAcl(options.acl, zk.settings().auth);
    this.#log = (checkLogger(options.logger) ?? NO_LOG).child({ election: name });
  }

  get isLeader(): boolean {
    return this.#leaderToken !== undefined;
  }

  /** The fencing token (czxid of the leading ballot) while leader. */
  get token(): number | undefined {
    return this.#leaderToken;
  }

  /** Full path of this candidate's ballot, once cast. */
  get ballot(): string | undefined {
    return this.#ballot;
  }

  /** Data of the acknowledged leader, or `null` when no leader has acknowledged. */
  async leaderData(): Promise<Buffer | null> {
    try {
      return (await this.#zk.get(this.paths.ack)).data;
    } catch (err) {
      if ((err as BellwetherError).code === ErrorCodes.ZK_NO_NODE) return null;
      throw err;
    }
  }

  /**
   * Joins the election; resolves once the first check ran (won, or waiting). Again in every new session.
   * Rejects when ZooKeeper refuses this session there (BW_ERR_ZK_NO_AUTH: the election's ACL; also
   * BW_ERR_ZK_INVALID_ACL, BW_ERR_ZK_AUTH_FAILED): the candidate then has left the election for good.
   */
  async vote(): Promise<void> {
    if (this.#state === 'closed') throw this.#failure ?? new BellwetherError(ErrorCodes.CLOSED, `candidate ${this.name} was closed`);
    if (this.#state === 'voting') return this.#checking;
    this.#state = 'voting';
    const schedule = (): void => void this.#check();
    // vote() checks the current session itself, below: onConnected's echo for it would only list the ballots again.
    let checkedHere = this.#zk.state === 'connected' ? this.#zk.sessionId : undefined;
    this.#unsubscribe.push(
      this.#zk.onConnected(({ sessionId }) => {
        if (sessionId === checkedHere) checkedHere = undefined;
        else schedule();
      }),
    );
    // A late event of an earlier session (the queue held by a slow handler or a fork) says nothing of this one.
    const ofOtherSession = (sessionId: string): boolean => this.#ballotSession !== undefined && this.#ballotSession !== sessionId;
    const onSuspended = ({ sessionId }: { sessionId: string }): void => {
      // Watches re-armed on reconnection report what changed meanwhile in no particular order:
      // the deletion of our predecessor may come before that of our own ballot. List the ballots then.
      this.#forgetOrder();
      if (!ofOtherSession(sessionId)) this.#demote('suspended');
    };
    const onExpired = ({ sessionId }: { sessionId: string }): void => {
      // Delivered late: a check may already have voted in the new session. Only what belonged to the expired one goes.
      if (ofOtherSession(sessionId)) {
        // Its ack went with it all the same.
        if (this.#ackedIn === sessionId) this.#acked = false;
        if (this.#ackUnsureIn === sessionId) this.#ackUnsureIn = undefined;
        return;
      }
      this.#demote('expired');
      this.#acked = false;
      this.#ballot = undefined;
      this.#forgetWatches();
      this.#forgetOrder();
    };
    this.#zk.on('suspended', onSuspended);
    this.#zk.on('expired', onExpired);
    this.#zk.on('reconnected', schedule);
    this.#unsubscribe.push(
      () => this.#zk.off('suspended', onSuspended),
      () => this.#zk.off('expired', onExpired),
      () => this.#zk.off('reconnected', schedule),
    );
    if (this.#zk.state !== 'connected') return;
    this.#voteWaiting = true;
    try {
      await this.#check();
    } finally {
      this.#voteWaiting = false;
    }
    if (this.#failure) throw this.#failure;
  }

  /** Resigns: deletes the ack (if ours) and the ballot now, so the next candidate leads at once. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const voting = this.#state === 'voting';
    this.#state = 'closed';
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    this.#demote('resigned');
    // Also when it was not leading (a monitor left by a step-down for silence).
    clearInterval(this.#monitor);
    this.#monitor = undefined;
    if (!voting) return;
    const resign = (async () => {
      // A running check can no longer lead (it checks the state), but it may still cast a ballot: wait for it.
      await this.#checking?.catch(() => undefined);
      const ballot = this.#ballot;
      const session = this.#zk.sessionId;
      const ownBallot = ballot !== undefined && this.#ballotSession === session;
      this.#ballot = undefined;
      const ackedHere = this.#acked && this.#ackedIn === session;
      // Also an ack whose create lost its answer in this session: applied, it would stay while the session lives.
      const acked = this.#acked || (this.#ackUnsureIn !== undefined && this.#ackUnsureIn === session);
      this.#acked = false;
      this.#ackUnsureIn = undefined;
      if (ownBallot && (ackedHere || !acked) && (await this.#resignAtOnce(ballot, ackedHere))) return;
      // The ack first: observers see the leader go before the next one acknowledges.
      if (acked) await this.#deleteIfOurs(this.paths.ack);
      if (ballot) await this.#deleteIfOurs(ballot);
    })();
    // Unreachable for a whole timeout, the server has usually expired the session (and these nodes)
    // by then: close() waits no longer. The resign goes on while the session lives, though: a server
    // that restarts, or an ensemble that re-forms, can bring the same session back with its nodes.
    await settledWithin(this.#zk.timeout ?? this.#zk.settings().sessionTimeout, resign);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * One request: the ballot (and the ack, when ours) deleted together, with
   * no `exists` first. Both were created in this session, so they are ours:
   * the ballot's path is unique to us, and while it stands and was the
   * lowest nobody else could have created an ack. If the ballot is gone,
   * the multi fails as a whole and changes nothing. False when it did not
   * go through (the caller then deletes node by node, checking ownership).
   */
  async #resignAtOnce(ballot: string, withAck: boolean): Promise<boolean> {
    try {
      const tx = this.#zk.transaction();
      if (withAck) tx.delete(this.paths.ack);
      await tx.delete(ballot).commit();
      return true;
    } catch {
      // Not applied (a node already gone), or not known (connection lost): the careful path decides.
      return false;
    }
  }

  /** Coalesced: one check runs at a time, and one more runs if asked meanwhile. */
  #check(): Promise<void> {
    if (this.#state !== 'voting') return Promise.resolve();
    if (this.#checking) {
      this.#checkAgain = true;
      return this.#checking;
    }
    this.#checking = (async () => {
      try {
        do {
          this.#checkAgain = false;
          await this.#checkOnce().catch((err: unknown) => this.#onCheckError(err));
        } while (this.#checkAgain && this.#state === 'voting');
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  #onCheckError(err: unknown): void {
    const code = (err as BellwetherError).code;
    // Connection trouble: the session's reconnected/connected events check again.
    if (isConnectionTrouble(code)) return;
    if (isRefusal(code)) return this.#giveUp(err as BellwetherError);
    this.#report(err instanceof BellwetherError ? err : callbackFailed(`election ${this.name}`, err));
  }

  /**
   * ZooKeeper refused this session (its identity may not write there, or
   * the ACL itself): checking again would be refused again, in this session
   * and every later one. The candidate leaves the election, once.
   */
  #giveUp(err: BellwetherError): void {
    if (this.#failure) return;
    const why =
      err.code === ErrorCodes.ZK_NO_AUTH
        ? "the ACL of the election's nodes does not let this session's identity (its auth option) write there"
        : err.code === ErrorCodes.ZK_INVALID_ACL
          ? 'ZooKeeper refused the acl option'
          : "ZooKeeper refused the session's credentials";
    this.#failure = new BellwetherError(err.code, `election ${this.name}: ${err.message}: ${why}; the candidate left the election`, { cause: err });
    void this.close();
    if (!this.#voteWaiting) this.#report(this.#failure);
  }

  async #checkOnce(): Promise<void> {
    if (this.#state !== 'voting' || this.#zk.state !== 'connected') return;
    const session = this.#zk.sessionId!;
    if (!this.#ballot || this.#ballotSession !== session) await this.#castBallot(session);
    const ballot = this.#ballot;
    // The session expired meanwhile (its handler cleared the ballot): the new session checks again.
    if (!ballot || this.#zk.sessionId !== session) return;
    // The shortcut also needs our own ballot watched (its deletion would have come first).
    if (this.#ownWatched !== ballot) await this.#watchOwnBallot(ballot);
    if (this.#ballot !== ballot || this.#zk.sessionId !== session) return;
    if (this.#leaderGone) {
      // Sequence numbers only grow: with the lowest ballot, our predecessor, gone, ours is the lowest.
      // Had our own ballot been deleted first, its watch would have said so first (notifications
      // come in the order of the changes) and cleared it; a reconnection cleared this shortcut.
      this.#leaderGone = false;
      this.#predecessorLowest = false;
      return this.#lead(session, ballot);
    }
    const children = await this.#zk.children(this.paths.dir);
    if (this.#ballot !== ballot || this.#zk.sessionId !== session) return;
    const { lower: ours, predecessor, grandPredecessor } = standingOf(children, ballot.slice(this.paths.dir.length + 1));
    if (ours < 0) {
      // Our ballot is gone (deleted by hand, or the session changed under us): vote again.
      this.#dropAck();
      this.#demote('superseded');
      this.#ballot = undefined;
      this.#checkAgain = true;
      return;
    }
    if (ours === 0) return this.#lead(session, ballot);
    if (this.isLeader) this.#demote('superseded');
    await this.#follow(joinPath(this.paths.dir, predecessor!), ours, grandPredecessor && joinPath(this.paths.dir, grandPredecessor));
  }

  /** Protected creation: a create whose answer was lost is found again by our marker, and kept only if it is ours. */
  async #castBallot(session: string): Promise<void> {
    const prefix = ballotPrefix(this.#marker);
    const sameSession = (): void => {
      // A retry must not carry into a new session: that session votes by itself (onConnected).
      if (this.#zk.sessionId !== session) throw new BellwetherError(ErrorCodes.ZK_SESSION_EXPIRED, `session ${session} ended while voting`);
    };
    for (;;) {
      sameSession();
      try {
        const created = await this.#zk.create(joinPath(this.paths.dir, prefix), this.#data, { mode: 'ephemeral-sequential', acl: this.#acl });
        if (this.#zk.sessionId !== session) {
          // Sent again after a reconnect that turned out to be a new session: not this round's ballot.
          await this.#deleteIfOurs(created);
          sameSession();
        }
        return await this.#adoptBallot(created, session);
      } catch (err) {
        // The election's directory does not exist yet: created once, not before every ballot.
        if ((err as BellwetherError).code === ErrorCodes.ZK_NO_NODE) {
          await this.#zk.mkdirp(this.paths.dir, undefined, { acl: this.#acl });
          continue;
        }
        if ((err as BellwetherError).code !== ErrorCodes.ZK_CONNECTION_LOSS) throw err;
        sameSession();
        await this.#zk.sync(this.paths.dir);
        sameSession();
        // No directory: the lost create was the one that found none (it is created on the next try).
        const children = await this.#zk.children(this.paths.dir).catch((e: unknown) => {
          if ((e as BellwetherError).code === ErrorCodes.ZK_NO_NODE) return [];
          throw e;
        });
        for (const child of children.filter((c) => c.startsWith(prefix))) {
          const stat = await this.#zk.exists(joinPath(this.paths.dir, child));
          if (stat?.ephemeralOwner === session) return await this.#adoptBallot(joinPath(this.paths.dir, child), session);
        }
      }
    }
  }

  /**
   * Our ballot, watched: if anyone else deletes it, we stop leading (or
   * waiting) at once and vote again, and that notification comes before any
   * later one (the successor-knows-it-leads shortcut relies on it).
   */
  async #adoptBallot(ballot: string, session: string): Promise<void> {
    this.#ballot = ballot;
    this.#ballotSession = session;
    this.#ballotCzxid = undefined;
    this.#ownWatched = undefined;
    // Watches of an earlier ballot (a late expiry) must not be taken for this one's.
    this.#forgetWatches();
    this.#forgetOrder();
    await this.#watchOwnBallot(ballot);
  }

  /**
   * What a watch set before now says about the order of later changes is
   * unknown (a suspension, an expiry, another ballot, our own ballot's watch
   * spent): no shortcut until the ballots are listed again.
   */
  #forgetOrder(): void {
    this.#epoch += 1;
    this.#predecessorLowest = false;
    this.#leaderGone = false;
  }

  /** The watches we hold are not (or no longer) for the current ballot: the next check sets them. */
  #forgetWatches(): void {
    this.#watchedPredecessor = undefined;
    this.#watchedGrand = undefined;
    this.#watchingAck = false;
  }

  async #watchOwnBallot(ballot: string): Promise<void> {
    const stat = await this.#zk.existsWatch(ballot, (change) => this.#onOwnBallotChange(ballot, change));
    if (!stat) this.#onOwnBallotChange(ballot, 'deleted');
    else if (this.#ballot === ballot) {
      this.#ballotCzxid = stat.czxid;
      this.#ownWatched = ballot;
    }
  }

  #onOwnBallotChange(ballot: string, change: NodeChange): void {
    // Our own resign clears #ballot before deleting it; an expiry clears it too.
    if (this.#state !== 'voting' || this.#ballot !== ballot) return;
    // Until the watch is set again (its data was set by hand: the watch is spent), a deletion of our
    // ballot could go unseen: no shortcut, and the server is asked before claiming.
    this.#ownWatched = undefined;
    this.#ballotCzxid = undefined;
    this.#forgetOrder();
    if (change !== 'deleted') {
      this.#watchOwnBallot(ballot).catch((err: unknown) => this.#onCheckError(err));
      return;
    }
    this.#dropAck();
    this.#ballot = undefined;
    this.#forgetWatches();
    this.#demote('superseded');
    void this.#check();
  }

  /**
   * Deposed (our ballot gone while we led): our ack would tell observers we
   * still lead, and keep the next leader from acknowledging. Deleted, if ours.
   */
  #dropAck(): void {
    const session = this.#zk.sessionId;
    // Only an ack of this session (one from an expired session is gone with it, and deleting by
    // ownership would take a same-session sibling's); also one whose create lost its answer here.
    const ours = (this.#acked && this.#ackedIn === session) || (this.#ackUnsureIn !== undefined && this.#ackUnsureIn === session);
    this.#acked = false;
    this.#ackUnsureIn = undefined;
    if (ours) void this.#deleteIfOurs(this.paths.ack);
  }

  async #lead(session: string, ballot: string): Promise<void> {
    // Before claiming: the lowest ballot must belong to the session we are in now. One cast in
    // this session does (ephemeral nodes belong to the session that created them); only
    // otherwise is the server asked.
    let czxid = this.#ballotSession === session ? this.#ballotCzxid : undefined;
    if (czxid === undefined) {
      const stat = await this.#zk.exists(ballot);
      if (this.#state !== 'voting' || this.#ballot !== ballot) return; // closed, or the session changed, meanwhile
      if (!stat || stat.ephemeralOwner !== session) {
        this.#ballot = undefined;
        this.#checkAgain = true;
        return;
      }
      czxid = stat.czxid;
    }
    if (!this.isLeader) {
      // Closed (or the ballot replaced) meanwhile, or no longer connected in that session: no claim.
      if (this.#state !== 'voting' || this.#ballot !== ballot) return;
      if (this.#zk.state !== 'connected' || this.#zk.sessionId !== session) return;
      const token = Number(czxid);
      this.#leaderToken = token;
      this.#log.info({ event: 'elected', token }, `elected in ${this.name} (token ${token})`);
      this.#startMonitor();
      try {
        this.emit('won', { token });
      } catch (err) {
        this.#report(callbackFailed(`won listener of election ${this.name}`, err));
      }
      // The seed acknowledges once the leader has taken over: what the listeners started
      // (a singleton's job, a few promise turns away) goes first, the ack's request after it.
      await new Promise((resolve) => setImmediate(resolve));
      if (!this.isLeader || this.#zk.sessionId !== session) return;
    }
    if (!this.#acked || this.#ackedIn !== session) await this.#acknowledge(session);
  }

  /** The leader_ack tells observers and losers that the leader has taken over. */
  async #acknowledge(session: string): Promise<void> {
    try {
      await this.#zk.create(this.paths.ack, this.#data, { mode: 'ephemeral', acl: this.#acl }).catch((err: unknown) => {
        if ((err as BellwetherError).code === ErrorCodes.ZK_CONNECTION_LOSS) this.#ackUnsureIn = session;
        throw err;
      });
      this.#acked = true;
      this.#ackedIn = session;
      this.#ackUnsureIn = undefined;
      // Closed or demoted while the create was in flight: the ack must not outlive the leadership.
      if (!this.isLeader) {
        this.#acked = false;
        await this.#deleteIfOurs(this.paths.ack);
      }
    } catch (err) {
      if ((err as BellwetherError).code !== ErrorCodes.ZK_NODE_EXISTS) throw err;
      const stat = await this.#zk.existsWatch(this.paths.ack, () => void this.#check());
      this.#ackUnsureIn = undefined;
      // Ours already: a create applied whose answer was lost. It is ours to delete on close.
      if (stat && stat.ephemeralOwner === session) {
        this.#acked = true;
        this.#ackedIn = session;
        return;
      }
      // Someone else's ack still there (its session not yet gone): try again when it goes.
      if (stat) return;
      this.#checkAgain = true;
    }
  }

  /** A loser reports the acknowledged leader once, and watches only its predecessor. */
  async #follow(predecessor: string, ours: number, grand: string | undefined): Promise<void> {
    const lowest = ours === 1;
    if (this.#reportLost) await this.#awaitAck();
    if (this.#watchedPredecessor !== predecessor) {
      this.#watchedPredecessor = predecessor;
      this.#predecessorLowest = lowest;
      const stat = await this.#zk
        .existsWatch(predecessor, (change) => {
          if (this.#watchedPredecessor !== predecessor) return void this.#check();
          this.#watchedPredecessor = undefined;
          // Data set on it by hand says nothing about who leads: only a deletion is the leader going.
          if (change === 'deleted' && this.#predecessorLowest && this.#ballotSession === this.#zk.sessionId) this.#leaderGone = true;
          void this.#check();
        })
        .catch((err: unknown) => {
          // No watch is known to be set: the next check sets it (else nothing would wake us when it goes).
          if (this.#watchedPredecessor === predecessor) {
            this.#watchedPredecessor = undefined;
            this.#predecessorLowest = false;
          }
          throw err;
        });
      // Gone before the watch was set: check again now.
      if (!stat) {
        this.#watchedPredecessor = undefined;
        this.#checkAgain = true;
      }
    } else {
      // Lower ballots went meanwhile: our predecessor may be the lowest now (never the reverse).
      this.#predecessorLowest = lowest;
    }
    if (grand && this.#watchedGrand !== grand) await this.#watchGrand(grand, predecessor, ours === 2);
  }

  /**
   * Each candidate also watches the ballot two below its own. When that one
   * goes, the candidate learns where it stands before its turn comes: second
   * in line, its predecessor is now the lowest (sequence numbers only grow,
   * so no request is needed); further back, it lists the ballots again, off
   * the failover's path. So in a steady fleet the successor always knows it
   * leads once its predecessor is deleted. A failover thus wakes three
   * sessions: the successor, the one after it, and the resigning one.
   */
  async #watchGrand(grand: string, predecessor: string, grandIsLowest: boolean): Promise<void> {
    this.#watchedGrand = grand;
    const epoch = this.#epoch;
    const stat = await this.#zk
      .existsWatch(grand, (change) => {
        if (this.#watchedGrand === grand) this.#watchedGrand = undefined;
        // Our predecessor's deletion, or our own, would have been delivered first (zxid order); a
        // suspension, expiry or new ballot since (another epoch) leaves the order unknown.
        if (change !== 'deleted' || epoch !== this.#epoch || this.#watchedPredecessor !== predecessor) return;
        if (grandIsLowest) this.#predecessorLowest = true;
        else this.#reposition(predecessor).catch((err: unknown) => this.#onCheckError(err));
      })
      .catch((err: unknown) => {
        if (this.#watchedGrand === grand) this.#watchedGrand = undefined; // set again by the next check
        throw err;
      });
    if (!stat && this.#watchedGrand === grand) {
      this.#watchedGrand = undefined;
      this.#checkAgain = true; // gone already: look again
    }
  }

  /**
   * Lists the ballots to learn where we stand now, and nothing else (no
   * `lost`, no ack): our predecessor is unchanged, only ballots below it went.
   */
  async #reposition(predecessor: string): Promise<void> {
    const ballot = this.#ballot;
    const epoch = this.#epoch;
    if (!ballot || this.#state !== 'voting') return;
    const children = await this.#zk.children(this.paths.dir);
    // Anything that happened meanwhile (our predecessor's deletion among it: notified before this answer) is for a check.
    if (epoch !== this.#epoch || this.#ballot !== ballot || this.#watchedPredecessor !== predecessor || this.#state !== 'voting') return;
    const standing = standingOf(children, ballot.slice(this.paths.dir.length + 1));
    if (standing.lower < 1 || joinPath(this.paths.dir, standing.predecessor!) !== predecessor) return void this.#check();
    this.#predecessorLowest = standing.lower === 1;
    const grand = standing.grandPredecessor && joinPath(this.paths.dir, standing.grandPredecessor);
    if (grand && this.#watchedGrand !== grand) await this.#watchGrand(grand, predecessor, standing.lower === 2);
  }

  /** `lost` once the leader has acknowledged; until then an existence watch on the ack. */
  async #awaitAck(): Promise<void> {
    let ack: { data: Buffer; stat: Stat } | null = null;
    try {
      ack = await this.#zk.get(this.paths.ack);
    } catch (err) {
      if ((err as BellwetherError).code !== ErrorCodes.ZK_NO_NODE) throw err;
    }
    if (ack) {
      this.#watchingAck = false;
      if (ack.stat.czxid !== this.#reportedLeader) {
        this.#reportedLeader = ack.stat.czxid;
        try {
          this.emit('lost', { leaderData: ack.data });
        } catch (err) {
          this.#report(callbackFailed(`lost listener of election ${this.name}`, err));
        }
      }
    } else if (!this.#watchingAck) {
      // An existence watch only while there is no ack: no herd when the leader changes.
      this.#watchingAck = true;
      const created = await this.#zk
        .existsWatch(this.paths.ack, () => {
          // A watch set just as the ack appeared fires at the next failover;
          // by then this candidate no longer waits for an ack: nothing to do.
          if (!this.#watchingAck) return;
          this.#watchingAck = false;
          void this.#check();
        })
        .catch((err: unknown) => {
          this.#watchingAck = false; // set again by the next check
          throw err;
        });
      if (created) this.#checkAgain = true; // created behind our back
    }
  }

  /**
   * While leader: step down once the server has been silent for too long,
   * before it could expire us. After such a step-down the session may never
   * report anything (the server answers again before it counts as
   * suspended), so the monitor goes on and checks again as soon as the
   * server answers: the ballot is still ours and lowest, we lead again.
   */
  #startMonitor(): void {
    clearInterval(this.#monitor);
    const timeout = this.#zk.timeout ?? 10_000;
    const deadline = this.#stepDownDeadline(timeout);
    this.#monitor = setInterval(() => {
      const silence = this.#zk.silence();
      const silent = this.#zk.state !== 'connected' || silence > deadline;
      if (this.isLeader) {
        // Also a session that is no longer the ballot's (its expiry not delivered yet: the queue is held).
        if (silent || this.#zk.sessionId !== this.#ballotSession) this.#stepDown(silence, deadline);
      } else if (!silent) {
        clearInterval(this.#monitor);
        this.#monitor = undefined;
        void this.#check();
      }
    }, Math.max(5, Math.floor(Math.min(deadline, timeout) / 10)));
    this.#monitor.unref();
  }

  /** The monitor's demotion, logged with why: the server silent past the deadline, or the session no longer fit to lead in. */
  #stepDown(silence: number, deadline: number): void {
    const state = this.#zk.state;
    const why =
      silence > deadline
        ? `ZooKeeper has not answered for ${Math.round(silence)} ms (deadline ${deadline} ms)`
        : state !== 'connected'
          ? `the session is ${state}`
          : "the session is no longer the ballot's";
    this.#log.warn({ event: 'step-down', token: this.#leaderToken, silence: Math.round(silence), deadline }, `stepping down in ${this.name}: ${why}`);
    this.#demote('suspended');
  }

  /** The step-down deadline (see step-down.ts); a given value moved into the sound range is reported once per session. */
  #stepDownDeadline(timeout: number): number {
    const given = this.#stepDownAfter;
    const { used, low, high } = stepDownDeadline(timeout, given);
    if (given !== undefined && used !== given && this.#warnedDeadline !== this.#zk.sessionId) {
      this.#warnedDeadline = this.#zk.sessionId;
      this.#report(
        new BellwetherError(
          ErrorCodes.INVALID_OPTION,
          `stepDownAfter ${given} ms does not fit the negotiated session timeout ${timeout} ms (it must be between ${low} and ${high} ms: above the idle ping interval, below the timeout); ${used} ms is used`,
        ),
      );
    }
    return used;
  }

  #demote(reason: CandidateDemotion): void {
    const token = this.#leaderToken;
    if (token === undefined) return;
    this.#leaderToken = undefined;
    // After a step-down for silence the monitor stays, to check again once the server answers.
    if (reason !== 'suspended' || this.#state !== 'voting') {
      clearInterval(this.#monitor);
      this.#monitor = undefined;
    }
    this.#log.info({ event: 'demoted', token, reason }, `no longer leads ${this.name} (token ${token}): ${reason}`);
    try {
      this.emit('demoted', { token, reason });
    } catch (err) {
      this.#report(callbackFailed(`demoted listener of election ${this.name}`, err));
    }
  }

  /**
   * Deletes a node of this session. A connection lost meanwhile does not
   * leave it behind (nobody else could lead while it stays): it is tried
   * again each time a connection is back, for as long as the session is the
   * same (after an expiry the node is gone with it) and not closed.
   */
  async #deleteIfOurs(path: string): Promise<void> {
    const session = this.#zk.sessionId;
    for (;;) {
      try {
        const stat = await this.#zk.exists(path);
        if (stat && stat.ephemeralOwner === session) await this.#zk.delete(path, stat.version);
        return;
      } catch (err) {
        const code = (err as BellwetherError).code;
        // Closed meanwhile: the session's end removes its nodes.
        if (this.#zk.state === 'closed') return;
        if (code === ErrorCodes.ZK_CONNECTION_LOSS && this.#zk.sessionId === session) {
          // No timer: a connection that never comes back holds nothing (close() has its own bound).
          await this.#zk.whenConnected();
          continue;
        }
        if (!isGoneAnyway(code)) this.#report(err as BellwetherError);
        return;
      }
    }
  }

  #report(error: BellwetherError): void {
    reportError(this, this.#log, error);
  }
}
