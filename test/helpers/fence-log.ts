import fs from 'node:fs';

export interface LogRecord {
  kind: 'start' | 'tick' | 'stop';
  token: number;
  /** The singleton's fence, decimal. */
  fence?: string;
  pid: number;
  /** Date.now() when written. */
  at: number;
}

/**
 * The complete records of a JSON-lines log that processes may still be
 * appending to: a reader can see an append half done (the part of a line
 * that crosses a page boundary comes later), so what follows the last
 * newline is left for the next read.
 */
export function readJsonLines<T>(file: string): T[] {
  const text = fs.readFileSync(file, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);
}

/**
 * Checks a shared start/tick/stop log written by job runners with O_APPEND:
 * fencing tokens strictly increase from one start to the next, and once a
 * term has started no record of an earlier term follows (no overlap; with
 * `overlap: 'allowed'`, only the tokens are checked).
 * Returns the tokens in the order their terms started (a leader that leads
 * again with the same token after a step-down counts once). With `by:
 * 'fence'`, the fences are checked instead, and returned.
 */
export function checkFenceLog(file: string, options?: { overlap?: 'refused' | 'allowed'; by?: 'token' }): number[];
export function checkFenceLog(file: string, options: { overlap?: 'refused' | 'allowed'; by: 'fence' }): bigint[];
export function checkFenceLog(file: string, options: { overlap?: 'refused' | 'allowed'; by?: 'token' | 'fence' } = {}): (number | bigint)[] {
  const records = readJsonLines<LogRecord>(file).map((r) => (options.by === 'fence' ? { ...r, token: BigInt(r.fence!) } : r) as Omit<LogRecord, 'token'> & { token: number | bigint });
  const terms: (number | bigint)[] = [];
  let current: (typeof records)[number] | undefined;
  for (const [index, r] of records.entries()) {
    if (r.kind === 'start') {
      // The same leader leading again after a step-down (its ballot still the lowest) keeps its token.
      const again = current !== undefined && r.token === current.token && r.pid === current.pid;
      if (current && r.token <= current.token && !again) {
        throw new Error(`record ${index}: token ${r.token} started after token ${current.token} (not increasing)`);
      }
      current = r;
      if (!again) terms.push(r.token);
    } else if (options.overlap !== 'allowed' && (!current || r.token !== current.token || r.pid !== current.pid)) {
      throw new Error(
        `record ${index}: ${r.kind} of token ${r.token} (pid ${r.pid}) while token ${current?.token} (pid ${current?.pid}) runs: two runners overlapped\n` +
          records
            .slice(Math.max(0, index - 12), index + 3)
            .filter((x) => x.kind !== 'tick' || x === r)
            .map((x) => JSON.stringify(x))
            .join('\n'),
      );
    }
  }
  return terms;
}
