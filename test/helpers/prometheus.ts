/**
 * A strict parser of Prometheus text format 0.0.4, for tests: every sample
 * must belong to a family declared with `# TYPE` before it, and no series
 * (name and labels) may appear twice. Throws on anything else.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string | undefined;
  samples: Sample[];
}

const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SUFFIXES: Record<Family['type'], string[]> = { counter: [''], gauge: [''], untyped: [''], histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  const seen = new Set<string>();
  for (const [n, line] of text.split('\n').entries()) {
    const where = `line ${n + 1} (${JSON.stringify(line)})`;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const [, keyword, name, rest] = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line) ?? [];
      if (!keyword) continue; // a comment
      if (!NAME.test(name!)) throw new Error(`bad metric name at ${where}`);
      if (keyword === 'HELP') help.set(name!, rest!);
      else {
        if (!TYPES.has(rest!)) throw new Error(`bad type at ${where}`);
        if (families.has(name!)) throw new Error(`second TYPE for ${name} at ${where}`);
        families.set(name!, { name: name!, type: rest as Family['type'], help: help.get(name!), samples: [] });
      }
      continue;
    }
    const sample = parseSample(line, where);
    const family = [...families.values()].find((f) => SUFFIXES[f.type].some((suffix) => f.name + suffix === sample.name));
    if (!family) throw new Error(`sample without a TYPE before it at ${where}`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new Error(`series repeated at ${where}`);
    seen.add(key);
    family.samples.push(sample);
  }
  for (const family of families.values()) family.help ??= help.get(family.name);
  return families;
}

function parseSample(line: string, where: string): Sample {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
  if (!name) throw new Error(`bad sample at ${where}`);
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    while (!rest.startsWith('}')) {
      const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/.exec(rest);
      if (!match) throw new Error(`bad labels at ${where}`);
      if (match[1]! in labels) throw new Error(`label ${match[1]} repeated at ${where}`);
      labels[match[1]!] = match[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(match[0].length);
    }
    rest = rest.slice(1);
  }
  const [value, timestamp, extra] = rest.trim().split(/\s+/);
  if (value === undefined || extra !== undefined || (timestamp !== undefined && !/^-?\d+$/.test(timestamp))) throw new Error(`bad value at ${where}`);
  const number = value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value);
  if (Number.isNaN(number) && value !== 'NaN') throw new Error(`bad value at ${where}`);
  return { name, labels, value: number };
}

/**
 * The samples of one family whose labels include `labels`; for a histogram's
 * (or a summary's) `_bucket`, `_sum` or `_count`, those samples of its family.
 */
export function samplesOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample[] {
  const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ''));
  return (family?.samples ?? []).filter((s) => (family!.name === name || s.name === name) && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
