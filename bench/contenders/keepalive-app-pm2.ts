/**
 * The restarts bench's app under PM2 (cluster mode, `pm2 reload`), written
 * the way PM2's graceful-start/stop docs tell users to:
 * - `wait_ready: true` in the app's config, and process.send('ready') once
 *   listening, so that the reload waits for the new worker to serve;
 * - a SIGINT handler (PM2's stop signal) that closes the server and exits
 *   once it has closed; PM2 sends SIGKILL after `kill_timeout` if it has not.
 * server.close() stops accepting and closes idle keep-alive connections;
 * it waits for the others to end.
 */
import { serve } from './keepalive-server.js';

const server = serve(() => process.send?.('ready'));
process.on('SIGINT', () => server.close(() => process.exit(0)));
