import fs from 'node:fs';

interface LogRecord {
  kind: 'start' | 'tick' | 'stop';
  token: number;
  pid: number;
}

/**
 * Checks a shared start/tick/stop log written by job runners with O_APPEND:
 * fencing tokens strictly increase from one start to the next, and once a
 * term has started no record of an earlier term follows (no overlap).
 * Returns the tokens in the order their terms started.
 */
export function checkFenceLog(file: string): number[] {
  const records = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LogRecord);
  const terms: number[] = [];
  let current: LogRecord | undefined;
  for (const [index, r] of records.entries()) {
    if (r.kind === 'start') {
      if (current && r.token <= current.token) {
        throw new Error(`record ${index}: token ${r.token} started after token ${current.token} (not increasing)`);
      }
      current = r;
      terms.push(r.token);
    } else if (!current || r.token !== current.token || r.pid !== current.pid) {
      throw new Error(
        `record ${index}: ${r.kind} of token ${r.token} (pid ${r.pid}) while token ${current?.token} (pid ${current?.pid}) runs: two runners overlapped`,
      );
    }
  }
  return terms;
}
