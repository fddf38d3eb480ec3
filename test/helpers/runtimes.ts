import { createRequire } from 'node:module';
import path from 'node:path';

export interface Runtime {
  name: 'node' | 'bun';
  bin: string;
}

const require = createRequire(import.meta.url);

/** Bun comes from the `bun` npm package (a dev dependency), so a fresh machine has it after `npm ci`. */
export const bun: Runtime = { name: 'bun', bin: path.join(path.dirname(require.resolve('bun/package.json')), 'bin', 'bun.exe') };
export const node: Runtime = { name: 'node', bin: process.execPath };

/**
 * The runtimes fixtures run under: Node and Bun, or those named in
 * BW_TEST_RUNTIMES (comma-separated, e.g. `node`: the runs of the test matrix
 * on other Node versions). A runtime left out has no tests at all, not skipped ones.
 */
export const RUNTIMES: readonly Runtime[] = selectRuntimes(process.env['BW_TEST_RUNTIMES']);

function selectRuntimes(list: string | undefined): Runtime[] {
  if (list === undefined || list.trim() === '') return [node, bun];
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => n !== 'node' && n !== 'bun');
  if (unknown.length > 0) throw new Error(`BW_TEST_RUNTIMES: unknown runtime ${unknown.join(', ')} (node, bun)`);
  return [node, bun].filter((r) => names.includes(r.name));
}

/**
 * For a test whose processes mix runtimes: the runtime itself when it is one
 * of RUNTIMES, Node otherwise (Node runs the tests, so it is always there).
 */
export function selected(runtime: Runtime): Runtime {
  return RUNTIMES.includes(runtime) ? runtime : node;
}

/** The runtimes of a mix, for a test's title: 'node+bun', or 'node' once Bun is left out. */
export function mixName(runtimes: readonly Runtime[]): string {
  return [...new Set(runtimes.map((r) => r.name))].join('+');
}

/** Compiled fixtures live beside the compiled tests: build/test/fixtures. */
export function fixture(name: string): string {
  return new URL(`../fixtures/${name}.js`, import.meta.url).pathname;
}
