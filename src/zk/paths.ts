import { BellwetherError, ErrorCodes } from '../errors.js';

/** ZooKeeper's own rules: absolute, no trailing slash, no empty, "." or ".." segment, no NUL. */
export function checkPath(path: unknown, what = 'path'): string {
  const fail = (why: string): never => {
    throw new BellwetherError(ErrorCodes.INVALID_PATH, `${what} ${JSON.stringify(path)} ${why}`);
  };
  if (typeof path !== 'string' || path === '') return fail('must be a non-empty string');
  if (!path.startsWith('/')) return fail('must be absolute (start with "/")');
  if (path === '/') return path;
  if (path.endsWith('/')) return fail('must not end with "/"');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') fail('must not have an empty segment ("//")');
    if (segment === '.' || segment === '..') fail('must not have a "." or ".." segment');
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\uffff]/.test(path)) fail('has a character ZooKeeper refuses');
  return path;
}

export function joinPath(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}
