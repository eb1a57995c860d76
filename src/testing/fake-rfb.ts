// A scriptable RFB 3.8 server on loopback for the viewer's tests: it runs the handshake (or fails it
// as told), records every client message, answers each FramebufferUpdateRequest with what
// `respond` returns (or holds it, like an idle desktop), optionally late and cut into tiny pieces.
import net from 'node:net';
import {
  ByteQueue,
  decodePixelFormat,
  encodeReason,
  encodeSecurityTypes,
  encodeServerInit,
  encodeU32,
  PF_RGB888,
  type PixelFormat,
  type Rect,
} from '../lab/desktop/rfb-proto.js';

export type ClientMessage =
  | { type: 'setPixelFormat'; pixelFormat: PixelFormat }
  | { type: 'setEncodings'; encodings: number[] }
  | { type: 'updateRequest'; incremental: boolean; rect: Rect; outstanding: number }
  | { type: 'key'; down: boolean; keysym: number }
  | { type: 'pointer'; buttons: number; x: number; y: number }
  | { type: 'cutText'; bytes: number };

export interface FakeRfbOptions {
  /** the 12-byte greeting (default 'RFB 003.008\n') */
  greeting?: string;
  securityTypes?: number[];
  /** with no security types: the reason sent */
  refuseReason?: string;
  /** SecurityResult: 0 ok (default), else failure with failReason */
  securityResult?: number;
  failReason?: string;
  width?: number;
  height?: number;
  name?: string;
  /** the reply to the n-th request (0 = the first, full one); null holds it (nothing changed) */
  respond?: (req: { incremental: boolean; rect: Rect }, n: number) => Uint8Array | null;
  /** wait before each reply */
  delayMs?: number;
  /** write replies in pieces of this many bytes, each in its own write */
  chunkBytes?: number;
  /** never send the greeting (a server that accepts and says nothing) */
  silent?: boolean;
}

export interface FakeRfbConnection {
  clientVersion: string | null;
  securityChoice: number | null;
  shared: boolean | null;
  messages: ClientMessage[];
  /** most FramebufferUpdateRequests unanswered at once */
  maxOutstanding: number;
  /** the client ended the connection with a FIN (not a reset) */
  endedCleanly: boolean;
  closed: Promise<void>;
}

export class FakeRfbServer {
  readonly connections: FakeRfbConnection[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(o: FakeRfbOptions = {}): Promise<FakeRfbServer> {
    let self: FakeRfbServer | null = null;
    const server = net.createServer((sock) => {
      if (self === null) {
        sock.destroy();
        return;
      }
      self.sockets.add(sock);
      sock.once('close', () => self?.sockets.delete(sock));
      self.connections.push(serve(sock, o));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('fake RFB server has no TCP port');
    self = new FakeRfbServer(server, addr.port);
    return self;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function serve(sock: net.Socket, o: FakeRfbOptions): FakeRfbConnection {
  const q = new ByteQueue(1 << 20);
  let waiter: { n: number; resolve: (b: Uint8Array | null) => void } | null = null;
  let ended = false;
  let resolveClosed!: () => void;
  const conn: FakeRfbConnection = {
    clientVersion: null,
    securityChoice: null,
    shared: null,
    messages: [],
    maxOutstanding: 0,
    endedCleanly: false,
    closed: new Promise<void>((r) => (resolveClosed = r)),
  };
  sock.on('data', (d: Buffer) => {
    q.push(d);
    if (waiter !== null && q.length >= waiter.n) {
      const w = waiter;
      waiter = null;
      w.resolve(q.take(w.n));
    }
  });
  sock.on('end', () => {
    conn.endedCleanly = true;
    ended = true;
    sock.end();
  });
  sock.on('error', () => undefined);
  sock.on('close', () => {
    ended = true;
    const w = waiter;
    waiter = null;
    w?.resolve(null);
    resolveClosed();
  });
  const need = (n: number): Promise<Uint8Array | null> =>
    new Promise((resolve) => {
      if (q.length >= n) resolve(q.take(n));
      else if (ended) resolve(null);
      else waiter = { n, resolve };
    });
  const write = async (b: Uint8Array): Promise<void> => {
    const step = o.chunkBytes ?? b.length;
    for (let i = 0; i < b.length; i += Math.max(1, step)) {
      if (sock.destroyed) return;
      sock.write(b.subarray(i, i + Math.max(1, step)));
      if (step < b.length) await new Promise((r) => setImmediate(r));
    }
  };
  const width = o.width ?? 64;
  const height = o.height ?? 48;

  void (async () => {
    if (o.silent === true) return;
    sock.write(o.greeting ?? 'RFB 003.008\n');
    const v = await need(12);
    if (v === null) return;
    conn.clientVersion = Buffer.from(v).toString('latin1');
    const types = o.securityTypes ?? [1];
    if (conn.clientVersion === 'RFB 003.003\n') {
      // 3.3: the server decides the security type (a u32), and there is no SecurityResult for None.
      sock.write(encodeU32(types[0] ?? 0));
      if (types[0] !== 1) {
        sock.end(encodeReason(o.refuseReason ?? 'no'));
        return;
      }
      conn.securityChoice = 1;
      const init33 = await need(1);
      if (init33 === null) return;
      conn.shared = init33[0] !== 0;
      sock.write(encodeServerInit({ width, height, pixelFormat: PF_RGB888, name: o.name ?? 'fake' }));
      await messages();
      return;
    }
    sock.write(encodeSecurityTypes(types));
    if (types.length === 0) {
      sock.end(encodeReason(o.refuseReason ?? 'no'));
      return;
    }
    const choice = await need(1);
    if (choice === null) return;
    conn.securityChoice = choice[0]!;
    const result = o.securityResult ?? 0;
    sock.write(encodeU32(result));
    if (result !== 0) {
      sock.end(encodeReason(o.failReason ?? 'failed'));
      return;
    }
    const init = await need(1);
    if (init === null) return;
    conn.shared = init[0] !== 0;
    sock.write(encodeServerInit({ width, height, pixelFormat: PF_RGB888, name: o.name ?? 'fake' }));
    await messages();
  })();

  async function messages(): Promise<void> {
    let outstanding = 0;
    let n = 0;
    let replying = Promise.resolve();
    for (;;) {
      const t = await need(1);
      if (t === null) return;
      const type = t[0]!;
      if (type === 0) {
        const b = await need(19);
        if (b === null) return;
        conn.messages.push({ type: 'setPixelFormat', pixelFormat: decodePixelFormat(b, 3) });
      } else if (type === 2) {
        const b = await need(3);
        if (b === null) return;
        const count = (b[1]! << 8) | b[2]!;
        const list = await need(4 * count);
        if (list === null) return;
        const dv = new DataView(list.buffer, list.byteOffset, list.byteLength);
        conn.messages.push({ type: 'setEncodings', encodings: Array.from({ length: count }, (_, i) => dv.getInt32(4 * i)) });
      } else if (type === 3) {
        const b = await need(9);
        if (b === null) return;
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const req = { incremental: b[0] !== 0, rect: { x: dv.getUint16(1), y: dv.getUint16(3), w: dv.getUint16(5), h: dv.getUint16(7) } };
        outstanding++;
        conn.maxOutstanding = Math.max(conn.maxOutstanding, outstanding);
        conn.messages.push({ type: 'updateRequest', ...req, outstanding });
        const reply = o.respond === undefined ? null : o.respond(req, n);
        n++;
        if (reply !== null) {
          replying = replying.then(async () => {
            if (o.delayMs !== undefined) await new Promise((r) => setTimeout(r, o.delayMs));
            // Counted as answered before the last byte leaves: the client may ask again right after it.
            outstanding--;
            await write(reply);
          });
        }
      } else if (type === 4) {
        const b = await need(7);
        if (b === null) return;
        conn.messages.push({ type: 'key', down: b[0] !== 0, keysym: new DataView(b.buffer, b.byteOffset).getUint32(3) });
      } else if (type === 5) {
        const b = await need(5);
        if (b === null) return;
        conn.messages.push({ type: 'pointer', buttons: b[0]!, x: (b[1]! << 8) | b[2]!, y: (b[3]! << 8) | b[4]! });
      } else if (type === 6) {
        const b = await need(7);
        if (b === null) return;
        const len = new DataView(b.buffer, b.byteOffset).getUint32(3);
        if ((await need(len)) === null) return;
        conn.messages.push({ type: 'cutText', bytes: len });
      } else {
        sock.destroy();
        return;
      }
    }
  }
  return conn;
}
