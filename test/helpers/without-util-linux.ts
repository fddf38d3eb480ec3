import fs from 'node:fs';
import path from 'node:path';
import { FLOCK, SETPRIV } from './tools.js';

const SCRIPT = new URL('../../../scripts/without-util-linux.sh', import.meta.url).pathname;

/**
 * A command-line prefix that runs a process as on a host without
 * util-linux (scripts/without-util-linux.sh), keeping its pid, with
 * `toolsDir` (an empty directory of the caller's, which removes it) as the
 * tools directory; `hide` hides more files.
 */
export function withoutUtilLinux(toolsDir: string, hide: string[] = []): { wrapper: string[]; env: NodeJS.ProcessEnv } {
  fs.chmodSync(toolsDir, 0o755);
  for (const [name, file] of [['flock', FLOCK], ['setpriv', SETPRIV]] as const) {
    fs.copyFileSync(file, path.join(toolsDir, name));
    fs.chmodSync(path.join(toolsDir, name), 0o755);
  }
  fs.writeFileSync(path.join(toolsDir, 'empty'), '');
  return { wrapper: [SCRIPT, ...hide.flatMap((file) => ['--hide', file]), '--'], env: { BW_TEST_TOOLS: toolsDir } };
}
