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
export const RUNTIMES: readonly Runtime[] = [node, bun];

/** Compiled fixtures live beside the compiled tests: build/test/fixtures. */
export function fixture(name: string): string {
  return new URL(`../fixtures/${name}.js`, import.meta.url).pathname;
}
