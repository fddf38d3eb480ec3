/**
 * Under Bun, node:cluster shares a port with SO_REUSEPORT: each worker has its
 * own listening socket. When a worker stops (rolling restart, scale-down),
 * connections still in its listener's accept queue are reset, unless Linux's
 * net.ipv4.tcp_migrate_req=1 (5.14+, per network namespace) moves them to
 * another listener of the group. Under Node the primary accepts (round-robin):
 * nothing to check.
 */
import fs from 'node:fs';

export const TCP_MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';

/** The warning to log (one line), or undefined when none is due (not Bun, not Linux, or the sysctl is on). */
export function reuseportWarning(file = TCP_MIGRATE_REQ): string | undefined {
  if (process.versions['bun'] === undefined || process.platform !== 'linux') return undefined;
  let state: string;
  try {
    const value = fs.readFileSync(file, 'utf8').trim();
    if (value !== '0') return undefined;
    state = 'net.ipv4.tcp_migrate_req is 0';
  } catch (err) {
    // Missing: a kernel before 5.14. Any other failure: we cannot tell, so say nothing.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    state = 'net.ipv4.tcp_migrate_req is not available (Linux before 5.14)';
  }
  return (
    `warning: under Bun each worker listens on its own SO_REUSEPORT socket and ${state}: ` +
    `connections queued on a stopping worker's listener may be reset during rolling restarts and scale-down. ` +
    `To have the kernel move them to the other workers, run \`sysctl -w net.ipv4.tcp_migrate_req=1\` ` +
    `(persist it in /etc/sysctl.d/); it is per network namespace: in a container, set it as the pod's/container's sysctl.`
  );
}
