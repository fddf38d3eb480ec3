/**
 * The supervisor bench's worker with all of bellwether loaded: the test
 * fixture http-app (which imports `bellwether/worker`), after
 * `import 'bellwether'` (node-zookeeper-client, the election, singleton and
 * status modules come along). Imports run in order: bellwether first.
 */
import 'bellwether';
import '../../test/fixtures/http-app.js';
