import fs from 'node:fs';
import path from 'node:path';

/**
 * util-linux programs the tests use themselves (an operator holding a lock
 * by hand, parent-death signals for fixtures and servers). Taken from
 * BW_TEST_TOOLS when set: the suite's run without util-linux hides them from
 * the system directories, where bellwether looks, and keeps copies there.
 */
function tool(name: string): string {
  const dirs = process.env['BW_TEST_TOOLS'] ? [process.env['BW_TEST_TOOLS']] : ['/usr/bin', '/bin'];
  const found = dirs.map((dir) => path.join(dir, name)).find((file) => fs.existsSync(file));
  if (!found) throw new Error(`the tests need ${name} (util-linux) in ${dirs.join(' or ')}`);
  return found;
}

export const FLOCK = tool('flock');
export const SETPRIV = tool('setpriv');

/** Whether this run hides util-linux from bellwether (see without-util-linux.test.ts). */
export const WITHOUT_UTIL_LINUX = process.env['BW_TEST_TOOLS'] !== undefined;
