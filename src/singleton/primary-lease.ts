import { electionPaths } from '../election/ballots.js';
import type { Acl } from '../zk/acl.js';
import { BellwetherError, type ErrorCode, ErrorCodes } from '../errors.js';
import type { FleetMessage } from '../cluster/protocol.js';
import { onFleetAnswer, tellPrimary } from '../worker/fleet-channel.js';
import { anySignal } from './abort.js';
import { fleetFence } from './fence.js';
import type { Lease, LeaseSource } from './lease.js';

/** The fleet election the primary stands in for the host, as the worker's singleton declares it. */
export interface PrimaryElection {
  name: string;
  /** Parent of the election directories. */
  root: string;
  data: Buffer;
  stepDownAfter?: number;
  /** Given by the singleton; else the primary's default (by its session's auth). */
  acl?: Acl;
}

/** Holdings of a host lock in this process, numbered: an answer to an earlier one is never taken for the current one. */
let holdings = 0;

/**
 * `host+cluster` in a worker of a Supervisor with `zk`: the primary stands in
 * the fleet election for the host, and the host lock picks the worker. The job
 * runs while this worker holds the host lock and the primary's lease lasts. A
 * worker that dies hands the host lock to a sibling in milliseconds; the
 * primary's ballot stays, so the fleet term is the same and ZooKeeper hears
 * nothing.
 */
export class PrimaryBallotLease implements LeaseSource {
  readonly #host: LeaseSource;
  readonly #election: PrimaryElection;
  readonly #path: string;

  constructor(host: LeaseSource, election: PrimaryElection) {
    this.#host = host;
    this.#election = election;
    this.#path = electionPaths(election.root, election.name).dir;
  }

  prepare(): void {
    this.#host.prepare();
    if (!process.connected) throw new BellwetherError(ErrorCodes.CLOSED, `singleton ${this.#election.name}: the channel to the primary, which holds the fleet ballot, is closed`);
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const host = await this.#host.acquire(signal);
    const hold = ++holdings;
    const election = this.#path;
    const grant = new PrimaryGrant(election, hold, this.#election.name);
    const { name, root, data, stepDownAfter, acl } = this.#election;
    const release = (): void => {
      grant.close();
      tellPrimary({ bellwether: 'fleet-release', election, hold });
    };
    let term: string;
    try {
      const told = tellPrimary({
        bellwether: 'fleet-hold',
        election,
        name,
        root,
        data: data.toString('base64'),
        ...(stepDownAfter === undefined ? {} : { stepDownAfter }),
        ...(acl === undefined ? {} : { acl }),
        hold,
        generation: host.token,
      });
      if (!told) throw new BellwetherError(ErrorCodes.CLOSED, `singleton ${name}: the channel to the primary is closed`);
      // Waiting for the host to lead ends too if the host lock is lost meanwhile (its file deleted).
      term = await grant.granted(anySignal([signal, host.lost]));
    } catch (err) {
      release();
      await host.release();
      throw err;
    }
    let released = false;
    return {
      token: Number(term),
      fence: fleetFence(term, host.token),
      lost: anySignal([grant.lost, host.lost]),
      release: async () => {
        if (released) return;
        released = true;
        // The job has settled (a singleton releases only then): the primary may give the term to the next holder.
        release();
        await host.release();
      },
    };
  }
}

/**
 * The primary's lease on one holding, as this worker sees it: granted with a
 * term, renewed while the host leads, lost on a revoke or, with no word from
 * the primary (stopped, blocked, cut off), at its own deadline by a local
 * timer: the primary's step-down deadline, less the time the message took.
 */
class PrimaryGrant {
  readonly #name: string;
  readonly #lost = new AbortController();
  readonly #unsubscribe: () => void;
  #term: string | undefined;
  /** performance.now() by which the job must have been told to stop. */
  #until = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #onGranted: ((term: string) => void) | undefined;
  #onRefused: ((error: BellwetherError) => void) | undefined;

  constructor(election: string, hold: number, name: string) {
    this.#name = name;
    this.#unsubscribe = onFleetAnswer(election, hold, (message) => this.#onAnswer(message));
  }

  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /** Resolves with the term once the primary says the host leads; rejects with `signal.reason` if aborted first. */
  granted(signal: AbortSignal): Promise<string> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#term !== undefined) return Promise.resolve(this.#term);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#onGranted = this.#onRefused = undefined;
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#onGranted = (term) => {
        signal.removeEventListener('abort', onAbort);
        resolve(term);
      };
      this.#onRefused = (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      };
    });
  }

  close(): void {
    this.#unsubscribe();
    clearTimeout(this.#timer);
    this.#onGranted = this.#onRefused = undefined;
  }

  #onAnswer(message: FleetMessage): void {
    if (message.bellwether === 'fleet-refused') {
      this.#onRefused?.(new BellwetherError(message.code as ErrorCode, message.message));
      this.#onGranted = this.#onRefused = undefined;
      return;
    }
    if (message.bellwether === 'fleet-revoke') {
      // Before a grant: the host did not lead for this holding; it waits on.
      if (this.#term !== undefined) this.#end('the primary says the host no longer leads');
      return;
    }
    if (message.bellwether !== 'fleet-lease' || this.#lost.signal.aborted) return;
    if (this.#term !== undefined && message.term !== this.#term) return this.#end('the fleet term changed');
    const now = performance.now();
    // The time the message spent on its way, by the wall clock both processes read (Date.now(): ms, so one
    // more); never negative (a clock stepped back), and the whole lease at most (a clock stepped forward).
    const transit = Math.min(Math.max(0, Date.now() - message.sentAt + 1), message.remaining);
    const until = now + message.remaining - transit;
    if (until <= now) {
      if (this.#term !== undefined) this.#end("the primary's lease ran out");
      return;
    }
    this.#until = until;
    this.#arm();
    if (this.#term === undefined) {
      this.#term = message.term;
      this.#onGranted?.(message.term);
      this.#onGranted = undefined;
    }
  }

  /** A local timer ends the lease at its deadline unless a renewal came meanwhile. */
  #arm(): void {
    clearTimeout(this.#timer);
    const check = (): void => {
      const left = this.#until - performance.now();
      if (left <= 0) this.#end("no renewal of the primary's lease before its deadline (the primary is stopped, blocked, or cannot reach ZooKeeper)");
      else this.#timer = setTimeout(check, left).unref();
    };
    this.#timer = setTimeout(check, Math.max(0, this.#until - performance.now())).unref();
  }

  #end(why: string): void {
    clearTimeout(this.#timer);
    if (this.#lost.signal.aborted) return;
    this.#lost.abort(new BellwetherError(ErrorCodes.ZK_CONNECTION_LOSS, `singleton ${this.#name} lost fleet leadership (${why})`));
  }
}
