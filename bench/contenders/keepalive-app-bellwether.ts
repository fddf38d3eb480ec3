/**
 * The restarts bench's app under `bellwether start`: the keep-alive server,
 * ready once listening. No shutdown code: draining on a graceful stop is
 * bellwether's job (its worker runtime disconnects the worker).
 */
import { worker } from 'bellwether/worker';
import { serve } from './keepalive-server.js';

serve(() => worker.ready());
