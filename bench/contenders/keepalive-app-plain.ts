/**
 * The restarts bench's app under the plain node:cluster primary
 * (rolling-cluster-primary): the keep-alive server and nothing else. The
 * primary's worker.disconnect() closes its server.
 */
import { serve } from './keepalive-server.js';

serve();
