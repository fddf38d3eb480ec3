export interface Summary {
  n: number;
  min: number;
  median: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles of a sample, in the sample's unit. */
export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  return { n: sorted.length, min: sorted[0]!, median: rank(50), p99: rank(99), max: sorted.at(-1)! };
}

export function table(title: string, header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' && !Number.isInteger(c) ? c.toFixed(2) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]): string => `| ${r.map((c, i) => String(c).padEnd(widths[i]!)).join(' | ')} |`;
  return [`\n${title}\n`, line(cells[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export function mean(samples: number[]): number {
  return samples.reduce((sum, x) => sum + x, 0) / samples.length;
}

/**
 * Median of `a` minus median of `b`, with a 95% percentile-bootstrap
 * interval (see bootstrapDifference).
 */
export function medianDifference(a: number[], b: number[]): { difference: number; low: number; high: number } {
  return bootstrapDifference(a, b, (sample) => summarize(sample).median);
}

/** Mean of `a` minus mean of `b`, with a 95% percentile-bootstrap interval. */
export function meanDifference(a: number[], b: number[]): { difference: number; low: number; high: number } {
  return bootstrapDifference(a, b, mean);
}

/**
 * `statistic(a) - statistic(b)`, with a 95% percentile-bootstrap interval
 * (2000 resamples of each sample, a fixed seed: the same data gives the
 * same interval).
 */
function bootstrapDifference(a: number[], b: number[], statistic: (sample: number[]) => number): { difference: number; low: number; high: number } {
  let seed = 0x2545f491;
  const random = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const resample = (sample: number[]): number[] => sample.map(() => sample[Math.floor(random() * sample.length)]!);
  const differences = Array.from({ length: 2000 }, () => statistic(resample(a)) - statistic(resample(b))).sort((x, y) => x - y);
  return { difference: statistic(a) - statistic(b), low: differences[49]!, high: differences[1949]! };
}

/**
 * A table cell for a 99th percentile of n samples: '-' at n <= 100, where the
 * nearest-rank p99 is the largest sample (at n = 100 the second largest) and
 * a max column says it plainly.
 */
export function p99Cell(n: number, p99: number): number | string {
  return n > 100 ? p99 : '-';
}
