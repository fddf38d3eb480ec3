#!/usr/bin/env node
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BellwetherError } from './errors.js';
import { defaultLockDir } from './lock/lock-dir.js';
import { inspectHostLock } from './lock/inspect.js';

const HELP = `Usage: bellwether <command> [options]

Commands:
  lock <name> [--lock-dir DIR] [--json]
      Shows whether the host singleton <name> is running on this host (its
      flock(2) lock is held) and the last holder's fencing token and pid.
      Exit code 0 when held, 3 when nobody holds it.

Options:
  --lock-dir DIR   lock directory (default: ${defaultLockDir()})
  --json           print JSON instead of text
  -h, --help       this help
  -v, --version    the version
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'lock-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'v', default: false },
    },
  });
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const [command, name, ...rest] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  if (command !== 'lock' || name === undefined || rest.length > 0) {
    process.stderr.write(`bellwether: unknown command line: ${positionals.join(' ')}\n\n${HELP}`);
    return 2;
  }
  const lockDir = values['lock-dir'];
  const report = inspectHostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined);
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    const last = report.lastToken === undefined ? 'never held' : `last holder pid ${report.lastPid}, fencing token ${report.lastToken}`;
    process.stdout.write(`${name}: ${report.held ? 'running (lock held)' : 'not running (lock free)'}; ${last}\n  ${report.file}\n`);
  }
  return report.held ? 0 : 3;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  const code = err instanceof BellwetherError ? `${err.code}: ` : '';
  process.stderr.write(`bellwether: ${code}${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
}
