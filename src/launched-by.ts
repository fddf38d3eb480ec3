/**
 * The parent's pid as this process starts: imported first by the CLI, so it
 * is read before the other modules load (a parent that dies meanwhile is
 * still the one `--stop-with-parent` watches).
 */
export const LAUNCHED_BY = process.ppid;
