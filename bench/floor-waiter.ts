import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The floor of a host takeover: a C program already blocked in flock(2)
 * that reads CLOCK_MONOTONIC the moment flock(2) returns, before any other
 * work (no fork, exec, runtime or shell start-up after the wake). With
 * `--now` it prints the clock at once instead (a command's start, for
 * `flock -c`). Either way it prints "stamp <ns>" and "acquired", then holds
 * until its stdin ends or it is killed.
 */
const SOURCE = `
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  struct timespec t;
  if (argc == 2 && strcmp(argv[1], "--now") != 0) {
    int fd = open(argv[1], O_RDWR);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) { perror("floor-waiter"); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t);
  char line[64];
  int n = snprintf(line, sizeof line, "stamp %lld%09ld\\nacquired\\n", (long long)t.tv_sec, t.tv_nsec);
  if (write(1, line, n) != n) return 1;
  char buffer[256];
  while (read(0, buffer, sizeof buffer) > 0);
  return 0;
}
`;

/**
 * The holder's reaper: runs the holder as its child (killed with it, by
 * PR_SET_PDEATHSIG, as the reaper is with the benchmark), prints "holder <pid>", and once waitpid(2) returns,
 * "reaped <ns>" (CLOCK_MONOTONIC). The kernel releases a dying process's
 * locks as it closes its files, before its parent can reap it: takeovers
 * timed from this stamp leave out how long the holder took to exit, which
 * varies far more than the takeover itself.
 */
const REAPER_SOURCE = `
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pid_t reaper = getpid();
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 1; }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != reaper) _exit(1); /* the reaper died before the prctl */
    execvp(argv[1], argv + 1);
    perror("exec");
    _exit(127);
  }
  char line[64];
  int n = snprintf(line, sizeof line, "holder %d\\n", (int)pid);
  if (write(1, line, n) != n) return 1;
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) { perror("waitpid"); return 1; }
  }
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  n = snprintf(line, sizeof line, "reaped %lld%09ld\\n", (long long)t.tv_sec, t.tv_nsec);
  return write(1, line, n) == n ? 0 : 1;
}
`;

/**
 * Compiles the floor waiter and the holder's reaper into `dir` with `cc`;
 * undefined (and why) when there is no compiler.
 */
export function compileFloorWaiter(dir: string): { program?: string; reaper?: string; why?: string } {
  const built: string[] = [];
  for (const [name, text] of [['floor-waiter', SOURCE], ['reaper', REAPER_SOURCE]] as const) {
    const source = path.join(dir, `${name}.c`);
    const program = path.join(dir, name);
    fs.writeFileSync(source, text);
    const result = spawnSync('cc', ['-O2', '-o', program, source], { encoding: 'utf8' });
    if (result.error || result.status !== 0) return { why: `no floor row: cc failed (${result.error?.message ?? result.stderr.trim()})` };
    built.push(program);
  }
  return { program: built[0], reaper: built[1] };
}

/**
 * Checks that the stamps of `command` are on the benchmark's clock
 * (process.hrtime.bigint(), libuv's uv_hrtime: CLOCK_MONOTONIC on Linux):
 * a stamp taken by the child falls between two taken here around it.
 */
export function checkSameClock(command: string, args: string[]): void {
  for (let i = 0; i < 3; i++) {
    const before = process.hrtime.bigint();
    const out = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).stdout;
    const after = process.hrtime.bigint();
    const stamp = BigInt(/stamp (\d+)/.exec(out)?.[1] ?? '-1');
    if (stamp < before || stamp > after) throw new Error(`${command} ${args.join(' ')}: stamp ${stamp} not within [${before}, ${after}]: not the benchmark's clock`);
  }
}
