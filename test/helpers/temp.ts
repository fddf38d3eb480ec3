import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

/** A fresh 0700 directory removed after the test. */
export function tempDir(t: TestContext, prefix = 'bw-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => {
    // Moved away first: after-hooks run in registration order, so the test's
    // processes and singletons may still run, and would create files again
    // in a directory being removed (a holder puts a deleted lock file back).
    // Under another name, nothing they do reaches it.
    const trash = `${dir}.removed`;
    if (!fs.existsSync(dir)) return;
    fs.renameSync(dir, trash);
    fs.rmSync(trash, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  });
  return dir;
}
