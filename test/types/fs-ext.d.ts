declare module 'fs-ext' {
  const fsExt: { flock: typeof flock; flockSync: typeof flockSync };
  export default fsExt;
  type FlockFlags = 'sh' | 'ex' | 'shnb' | 'exnb' | 'un';
  export function flock(fd: number, flags: FlockFlags, callback: (err: NodeJS.ErrnoException | null) => void): void;
  export function flockSync(fd: number, flags: FlockFlags): void;
}
