declare module 'autocannon' {
  interface Result {
    requests: { average: number; total: number };
    /** ms */
    latency: { p50: number; p99: number; max: number };
    non2xx: number;
    errors: number;
    timeouts: number;
    /** Responses with a 2xx status. */
    '2xx': number;
    /** s, as the run took (a little over the asked duration) */
    duration: number;
  }
  function autocannon(options: { url: string; connections?: number; duration?: number; pipelining?: number; /** requests per second from all connections */ overallRate?: number }): Promise<Result>;
  export default autocannon;
}
