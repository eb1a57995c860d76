// A bulk TCP transfer for checking the emulated WAN (run inside namespaces with `ip netns exec`):
//   node tcp-tool.js server --port P [--host H] [--timeout-s S]
//     prints {"listening":true}, accepts one connection, reads it to the end, then prints
//     {"bytes","sha256","firstByteMs","lastByteMs","bucketsBytes":[bytes per 100 ms]} and exits;
//   node tcp-tool.js client --host H --port P (--seconds S | --bytes N)
//     sends a deterministic byte stream, then prints {"bytes","sha256","seconds"} and exits.
// The two sha256 values match only if every byte arrived once and in order.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const BUCKET_MS = 100;

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function fail(msg: string): never {
  process.stderr.write(`tcp-tool: ${msg}\n`);
  process.exit(2);
}

function pattern(): Buffer {
  // 1 MiB of xorshift bytes: compressible by nothing, the same on both sides.
  const b = Buffer.alloc(1 << 20);
  let x = 0x12345678;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

function server(): void {
  const port = Number(opt('port') ?? fail('--port is required'));
  const host = opt('host') ?? '0.0.0.0';
  const timeoutS = Number(opt('timeout-s') ?? '60');
  const hash = createHash('sha256');
  const buckets: number[] = [];
  let bytes = 0;
  let first = -1;
  let last = -1;
  const srv = net.createServer((sock) => {
    srv.close();
    sock.on('data', (d: Buffer) => {
      const now = performance.now();
      if (first < 0) first = now;
      last = now;
      bytes += d.length;
      hash.update(d);
      const k = Math.floor((now - first) / BUCKET_MS);
      while (buckets.length <= k) buckets.push(0);
      buckets[k]! += d.length;
    });
    sock.on('end', () => {
      process.stdout.write(JSON.stringify({ bytes, sha256: hash.digest('hex'), firstByteMs: first, lastByteMs: last, bucketMs: BUCKET_MS, bucketsBytes: buckets }) + '\n');
      process.exit(0);
    });
    sock.on('error', (e) => fail(`connection failed after ${bytes} bytes: ${e.message}`));
  });
  srv.listen(port, host, () => process.stdout.write(JSON.stringify({ listening: true }) + '\n'));
  setTimeout(() => fail(`no complete transfer within ${timeoutS} s (${bytes} bytes so far)`), timeoutS * 1000).unref();
}

function client(): void {
  const host = opt('host') ?? fail('--host is required');
  const port = Number(opt('port') ?? fail('--port is required'));
  const seconds = opt('seconds');
  const limitBytes = opt('bytes');
  if (seconds === undefined && limitBytes === undefined) fail('--seconds or --bytes is required');
  const maxBytes = limitBytes === undefined ? Infinity : Number(limitBytes);
  const chunkBytes = 64 * 1024;
  const data = pattern();
  const hash = createHash('sha256');
  let sent = 0;
  let pos = 0;
  let start = 0;
  const endAt = seconds === undefined ? Infinity : Number(seconds) * 1000;
  const sock = net.createConnection({ host, port });
  sock.on('error', (e) => fail(`connection to ${host}:${port} failed after ${sent} bytes: ${e.message}`));
  const pump = (): void => {
    for (;;) {
      if (sent >= maxBytes || performance.now() - start >= endAt) {
        sock.end(() => {
          process.stdout.write(JSON.stringify({ bytes: sent, sha256: hash.digest('hex'), seconds: (performance.now() - start) / 1000 }) + '\n');
          process.exit(0);
        });
        return;
      }
      const n = Math.min(chunkBytes, maxBytes - sent, data.length - pos);
      const chunk = data.subarray(pos, pos + n);
      pos = (pos + n) % data.length;
      sent += n;
      hash.update(chunk);
      if (!sock.write(chunk)) {
        sock.once('drain', pump);
        return;
      }
    }
  };
  sock.on('connect', () => {
    start = performance.now();
    pump();
  });
}

const mode = process.argv[2];
if (mode === 'server') server();
else if (mode === 'client') client();
else fail('usage: tcp-tool server --port P | client --host H --port P (--seconds S | --bytes N)');
