declare module 'autocannon' {
  interface Result {
    requests: { average: number; total: number };
    /** ms */
    latency: { p50: number; p99: number; max: number };
    non2xx: number;
    errors: number;
    timeouts: number;
  }
  function autocannon(options: { url: string; connections?: number; duration?: number; pipelining?: number }): Promise<Result>;
  export default autocannon;
}
