/**
 * The package as a user gets it: `npm pack`, the tarball installed into an
 * empty project, a user's TypeScript compiled with
 * `tsc --strict --module nodenext --moduleResolution nodenext` and no
 * skipLibCheck (so every declaration file it reaches is checked), then run.
 * The user's sources are test/consumer/: core.mts (`bellwether`,
 * `bellwether/worker`), adapters.mts (`bellwether/express`,
 * `bellwether/fastify`) and require.cts (every entry point from CommonJS).
 *
 * Two projects, installed and checked at the same time: one with every
 * optional peer (express with @types/express, fastify, prom-client), and one
 * with none of them, where the core entry points must compile and work alone.
 * Versions come from this repository's lockfile; npm installs from its cache
 * when it can.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { type Finished, runToEnd } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const SOURCES = path.join(ROOT, 'test', 'consumer');
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8')) as T;
const LOCKFILE = readJson<{ packages: Record<string, { version?: string }> }>('package-lock.json');
const MANIFEST = readJson<{ peerDependenciesMeta: Record<string, { optional?: boolean }> }>('package.json');
/** express, @types/express, fastify, prom-client: the package.json's own list. */
const OPTIONAL_PEERS = Object.keys(MANIFEST.peerDependenciesMeta).filter((name) => MANIFEST.peerDependenciesMeta[name]?.optional);

/** `name@version` as the lockfile has it. */
function locked(name: string): string {
  const version = LOCKFILE.packages[`node_modules/${name}`]?.version;
  assert.ok(version, `${name} is not in package-lock.json`);
  return `${name}@${version}`;
}

/** require() of an ES module works without a flag from Node 20.19 and 22.12 on (23 and later: always). */
function requiresEsm(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 23 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
}

function succeeded(what: string, result: Finished): void {
  assert.equal(result.code, 0, `${what} failed:\n${result.stdout}\n${result.stderr}`);
}

/** Runs `command` to completion (60 s at most unless told) and asserts it succeeded; its output. */
async function check(what: string, command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; ms?: number }): Promise<Finished> {
  const result = await runToEnd(what, command, args, { ms: 60_000, ...options });
  succeeded(what, result);
  return result;
}

/**
 * A fresh project (removed after the test) with bellwether from its tarball
 * and `packages`, the user's `sources` compiled in it; its directory.
 */
async function consumerProject(t: TestContext, packages: string[], sources: string[]): Promise<string> {
  const project = tempDir(t, 'bw-consumer-');
  const packed = JSON.parse((await check('npm pack', 'npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', project], { cwd: ROOT })).stdout) as { filename: string }[];
  const tarball = path.join(project, packed[0]!.filename);
  fs.writeFileSync(path.join(project, 'package.json'), `${JSON.stringify({ name: 'bellwether-consumer', private: true })}\n`);
  await check('npm install', 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, ...packages], { cwd: project, ms: 150_000 });
  for (const source of sources) fs.copyFileSync(path.join(SOURCES, source), path.join(project, source));
  const tsc = path.join(project, 'node_modules', 'typescript', 'bin', 'tsc');
  await check('tsc', process.execPath, [tsc, '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', ...sources], { cwd: project });
  return project;
}

/** Runs a compiled file of `project` with Node; what it reported (its last line of JSON). */
async function runCompiled(project: string, file: string): Promise<Record<string, unknown>> {
  const locks = path.join(project, 'locks');
  fs.mkdirSync(locks, { recursive: true, mode: 0o700 });
  const { stdout } = await check(file, process.execPath, [file], { cwd: project, env: { ...process.env, BELLWETHER_LOCK_DIR: locks }, ms: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** What core.mjs reports when it works; `metrics` is whether prom-client served the singleton's series. */
function coreReport(metrics: boolean | null): Record<string, unknown> {
  return {
    entry: 'core',
    supervised: false,
    index: null,
    token: 1,
    ranWith: [1],
    outcome: 'succeeded',
    ready: true,
    singletons: [{ name: 'consumer-core', leader: true }],
    metrics,
    badName: true,
    badConnect: true,
    listening: false,
  };
}

describe('the package as a user installs it: strict nodenext TypeScript without skipLibCheck, then run', { concurrency: true }, () => {
  test('with every optional peer: all four entry points compile and run, from ESM and from CommonJS', async (t) => {
    // A new optional peer needs its own use in test/consumer/.
    assert.deepEqual([...OPTIONAL_PEERS].sort(), ['@types/express', 'express', 'fastify', 'prom-client']);
    const packages = ['typescript', '@types/node', ...OPTIONAL_PEERS].map(locked);
    const project = await consumerProject(t, packages, ['core.mts', 'adapters.mts', 'require.cts']);

    assert.deepEqual(await runCompiled(project, 'core.mjs'), coreReport(true));
    assert.deepEqual(await runCompiled(project, 'adapters.mjs'), {
      entry: 'adapters',
      express: { readyz: { status: 200, text: '{"ready":true}' }, singletons: ['consumer-express'], metrics: true, app: '{"hello":"express"}' },
      fastify: { healthz: { status: 200, body: { live: true } }, singletons: ['consumer-fastify'] },
    });

    // The same declarations serve require(): it compiles on every version; whether it runs is Node's.
    const required = await runToEnd('require.cjs', process.execPath, ['require.cjs'], { cwd: project, ms: 30_000 });
    if (requiresEsm()) {
      succeeded(`require.cjs on Node ${process.versions.node}`, required);
      assert.deepEqual(JSON.parse(required.stdout.trim()), {
        entry: 'require',
        badName: true,
        supervised: false,
        singletons: ['consumer-cjs'],
        express: 'function',
        fastify: 'function',
      });
    } else {
      assert.notEqual(required.code, 0, `require() of bellwether worked on Node ${process.versions.node}: ${required.stdout}`);
      assert.match(required.stderr, /ERR_REQUIRE_ESM/);
    }
  });

  test('without the optional peers: they are not installed, and `bellwether` and `bellwether/worker` compile and run alone', async (t) => {
    const project = await consumerProject(t, ['typescript', '@types/node'].map(locked), ['core.mts']);
    for (const peer of OPTIONAL_PEERS) assert.equal(fs.existsSync(path.join(project, 'node_modules', peer)), false, `${peer} was installed`);
    // metrics: true without prom-client: the board serves none, and nothing else changes.
    assert.deepEqual(await runCompiled(project, 'core.mjs'), coreReport(null));
  });

  test('requiresEsm() follows the Node versions that load ES modules through require() without a flag', () => {
    for (const version of ['20.18.3', '21.7.3', '22.11.0']) assert.equal(requiresEsm(version), false, version);
    for (const version of ['20.19.0', '22.12.0', '23.0.0', '24.1.0']) assert.equal(requiresEsm(version), true, version);
  });
});
