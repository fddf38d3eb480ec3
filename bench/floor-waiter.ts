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

/** Compiles the floor waiter into `dir` with `cc`; undefined (and why) when there is no compiler. */
export function compileFloorWaiter(dir: string): { program?: string; why?: string } {
  const source = path.join(dir, 'floor-waiter.c');
  const program = path.join(dir, 'floor-waiter');
  fs.writeFileSync(source, SOURCE);
  const result = spawnSync('cc', ['-O2', '-o', program, source], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return { why: `no floor row: cc failed (${result.error?.message ?? result.stderr.trim()})` };
  return { program };
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
