/**
 * One Express app in a process of its own (two apps in one process would
 * share the JIT's state and the heap): GET / answers `{ hello: 'world' }`, behind
 * `app.use(bellwether())` when argv[2] is 'with'. No network and no HTTP
 * parser: each request is a real IncomingMessage and ServerResponse on a
 * socket that drops what it is sent, handed to `app(req, res)` as node:http's
 * server would, and done at the response's 'finish'.
 * Prints "ready" once GET / answered 200 with its body; then for each line
 * "<count>" on stdin serves that many requests one after another and prints
 * their mean wall-clock ns per request. Exits when stdin ends.
 * argv: with|without
 */
import http from 'node:http';
import type net from 'node:net';
import readline from 'node:readline';
import { Duplex } from 'node:stream';
import { bellwether } from 'bellwether/express';
import express from 'express';

const MAX_COUNT = 1_000_000;
const variant = process.argv[2];
if (variant !== 'with' && variant !== 'without') throw new Error(`argv[2] must be with or without, got ${variant}`);

const app = express();
const router = variant === 'with' ? bellwether() : undefined;
if (router) app.use(router);
app.get('/', (_request, response) => void response.json({ hello: 'world' }));

/** A socket that takes every write and sends nothing; `record` keeps the bytes (to check a response). */
function sinkSocket(record?: Buffer[]): net.Socket {
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      record?.push(chunk);
      callback();
    },
  });
  return socket as unknown as net.Socket;
}

function serveOne(socket: net.Socket): Promise<void> {
  const request = new http.IncomingMessage(socket);
  request.method = 'GET';
  request.url = '/';
  request.httpVersion = '1.1';
  request.httpVersionMajor = 1;
  request.httpVersionMinor = 1;
  request.headers = { host: '127.0.0.1' };
  request.rawHeaders = ['Host', '127.0.0.1'];
  request.push(null); // no body
  const response = new http.ServerResponse(request);
  response.shouldKeepAlive = true;
  response.assignSocket(socket);
  return new Promise((resolve, reject) => {
    response.once('finish', () => {
      response.detachSocket(socket);
      if (response.statusCode === 200) resolve();
      else reject(new Error(`GET / answered ${response.statusCode}`));
    });
    app(request, response);
  });
}

const bytes: Buffer[] = [];
await serveOne(sinkSocket(bytes));
const text = Buffer.concat(bytes).toString('latin1');
if (!text.startsWith('HTTP/1.1 200 OK\r\n') || !text.endsWith('\r\n\r\n{"hello":"world"}')) throw new Error(`unexpected response: ${JSON.stringify(text)}`);

const socket = sinkSocket();
// One batch at a time: lines that come while one runs wait their turn.
let queue = Promise.resolve();
readline
  .createInterface({ input: process.stdin })
  .on('line', (line) => {
    const count = Number(line);
    if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) throw new Error(`count must be 1..${MAX_COUNT}, got ${JSON.stringify(line)}`);
    queue = queue.then(async () => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < count; i++) await serveOne(socket);
      process.stdout.write(`${Number(process.hrtime.bigint() - start) / count}\n`);
    });
  })
  .on('close', () => void queue.then(() => router?.close()).then(() => process.exit(0)));
process.stdout.write('ready\n');
