// The same package from CommonJS: every entry point through require(), which
// loads ES modules from Node 20.19 and 22.12 on (before, ERR_REQUIRE_ESM).
import { BellwetherError, ErrorCodes, StatusBoard, singleton } from 'bellwether';
import { worker } from 'bellwether/worker';
import { bellwether } from 'bellwether/express';
import bellwetherPlugin from 'bellwether/fastify';

let code: string | undefined;
try {
  singleton({ name: 'not a name' });
} catch (err) {
  if (err instanceof BellwetherError) code = err.code;
}
const board = new StatusBoard({ singletons: [singleton({ name: 'consumer-cjs' })] });
console.log(
  JSON.stringify({
    entry: 'require',
    badName: code === ErrorCodes.INVALID_NAME,
    supervised: worker.isSupervised,
    singletons: board.snapshot().singletons.map(({ name }) => name),
    express: typeof bellwether,
    fastify: typeof bellwetherPlugin,
  }),
);
