import http from 'node:http';

export { freePort } from './ports.js';

/** GET on 127.0.0.1 with a bound; resolves with the status, content type and body, whatever the status. */
export function getText(port: number, path: string, timeoutMs = 5000): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, type: String(response.headers['content-type']), body }));
    });
    // The timeout option only emits 'timeout': ending the request is ours to do.
    request.on('timeout', () => request.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

/** GET on 127.0.0.1 with a bound; resolves with the parsed JSON body of a 200 answer. */
export async function getJson<T = Record<string, unknown>>(port: number, path = '/', timeoutMs = 5000): Promise<T> {
  const { status, body } = await getText(port, path, timeoutMs);
  if (status !== 200) throw new Error(`GET ${path}: ${status}`);
  return JSON.parse(body) as T;
}

/**
 * A bounded load: `concurrency` loops of GET / until `until` resolves or
 * `maxRequests` were sent; counts answers and failures, records the pids seen.
 */
export async function loadUntil(port: number, until: Promise<unknown>, concurrency = 4, maxRequests = 20_000): Promise<{ ok: number; failed: number; errors: string[]; pids: Set<number> }> {
  let done = false;
  void until.finally(() => (done = true));
  const result = { ok: 0, failed: 0, errors: [] as string[], pids: new Set<number>() };
  let sent = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!done && sent < maxRequests) {
        sent += 1;
        try {
          const body = await getJson<{ pid: number }>(port, '/');
          result.ok += 1;
          result.pids.add(body.pid);
        } catch (err) {
          result.failed += 1;
          if (result.errors.length < 5) result.errors.push((err as Error).message);
        }
      }
    }),
  );
  return result;
}
