// `node dist/src/lab/wan/relay-bench.js [--seconds S]` (root): how fast the WAN relay carries one
// TCP flow on this machine, and what CPU it spends. Prints one JSON line per case:
//   {"case","rttMs","rateMbps","tcpMbps","steadyMbps","relayCpuPct","relayUsPerPacket","packets","drops"}
import { createWanTestbed, tcpTransfer } from './testbed.js';

interface Case {
  name: string;
  rttMs: number;
  rateMbps: number;
  /** a second flow west→east at the same time */
  bothWays?: boolean;
}

const CASES: Case[] = [
  { name: 'unlimited, no delay (relay forwards at once)', rttMs: 0, rateMbps: 0 },
  { name: 'unlimited, 4 ms RTT (every datagram queued on the timer)', rttMs: 4, rateMbps: 0 },
  { name: '100 Mbit/s, 80 ms RTT', rttMs: 80, rateMbps: 100 },
  { name: '100 Mbit/s, 80 ms RTT, a flow each way at once', rttMs: 80, rateMbps: 100, bothWays: true },
  { name: 'unlimited, 4 ms RTT, a flow each way at once', rttMs: 4, rateMbps: 0, bothWays: true },
];

async function main(): Promise<void> {
  const i = process.argv.indexOf('--seconds');
  const seconds = i >= 0 ? Number(process.argv[i + 1]) : 5;
  for (const c of CASES) {
    const tb = await createWanTestbed({ sites: [{ name: 'east' }, { name: 'west' }], links: [{ a: 'east', b: 'west', rttMs: c.rttMs, rateMbps: c.rateMbps }] });
    try {
      const s0 = await tb.stats();
      const t0 = performance.now();
      const [r, back] = await Promise.all([
        tcpTransfer(tb, 'east', 'west', { seconds, port: 5201 }),
        c.bothWays === true ? tcpTransfer(tb, 'west', 'east', { seconds, port: 5202 }) : Promise.resolve(null),
      ]);
      const wallMs = performance.now() - t0;
      const s1 = await tb.stats();
      const cpuMs = s1.cpuUserMs + s1.cpuSystemMs - (s0.cpuUserMs + s0.cpuSystemMs);
      const packets = s1.directions.reduce((n, d) => n + d.rxPackets, 0) - s0.directions.reduce((n, d) => n + d.rxPackets, 0);
      const drops = s1.directions.reduce((n, d) => n + d.drops.queue + d.drops.inflight + d.drops.send, 0);
      process.stdout.write(
        JSON.stringify({
          case: c.name,
          rttMs: c.rttMs,
          rateMbps: c.rateMbps,
          tcpMbps: Math.round(r.mbps * 10) / 10,
          steadyMbps: Math.round(r.steadyMbps * 10) / 10,
          intact: r.intact && (back?.intact ?? true),
          ...(back === null ? {} : { backTcpMbps: Math.round(back.mbps * 10) / 10, backSteadyMbps: Math.round(back.steadyMbps * 10) / 10 }),
          relayCpuPct: Math.round((100 * cpuMs) / wallMs),
          relayUsPerPacket: Math.round(((cpuMs * 1000) / Math.max(1, packets)) * 10) / 10,
          packets,
          drops,
          lateness: s1.directions.map((d) => d.lateness),
        }) + '\n',
      );
    } finally {
      await tb.destroy();
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`relay-bench: ${(e as Error).message}\n`);
  process.exit(1);
});
