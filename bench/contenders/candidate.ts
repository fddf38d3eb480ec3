/**
 * ZooKeeper election contender: one ZkSession, one Candidate. Prints on stdout
 *   "timeout <ms>"      once the session is up (the negotiated session timeout),
 *   "won <token>"       when it leads,
 *   "lost <leaderData>" when another candidate leads and has acknowledged,
 *   "demoted <reason>"  when it stops leading,
 *   "ready"             once vote() resolved,
 *   "resigned"          after a "resign" line on stdin made it call candidate.close().
 * When stdin ends it closes the candidate and the session and exits.
 * Errors go to stderr as "error <message>".
 * argv: connect sessionTimeout name
 */
import readline from 'node:readline';
import { Candidate, ZkSession } from 'bellwether';

const [connect, sessionTimeout, name] = process.argv.slice(2) as [string, string, string];
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const complain = (err: Error): void => void process.stderr.write(`candidate ${process.pid}: error ${err.message}\n`);

const zk = new ZkSession({ connect, sessionTimeout: Number(sessionTimeout) });
zk.on('error', complain);
const candidate = new Candidate(zk, name, { data: String(process.pid) });
candidate.on('won', ({ token }) => say(`won ${token}`));
candidate.on('lost', ({ leaderData }) => say(`lost ${leaderData.toString()}`));
candidate.on('demoted', ({ reason }) => say(`demoted ${reason}`));
candidate.on('error', complain);

let leaving = false;
const leave = async (): Promise<void> => {
  if (leaving) return;
  leaving = true;
  await candidate.close();
  await zk.close();
  process.exit(0);
};
readline
  .createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line === 'resign') void candidate.close().then(() => say('resigned'), complain);
  })
  .on('close', () => void leave());

await zk.start();
say(`timeout ${zk.timeout}`);
await candidate.vote();
say('ready');
