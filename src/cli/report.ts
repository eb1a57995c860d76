import type { Comparison } from '../sim/compare.js';
import { fmtBytes, fmtNum, table } from './format.js';

export function simulationReport(cmp: Comparison): string {
  const lines = [
    `Scenario ${cmp.scenario}: ${cmp.sites} sites, ${cmp.vms} VMs, ${fmtNum(cmp.durationS / 3600)} h simulated`,
    '',
    table(
      ['policy', 'felt RTT ms', 'p95 felt ms', 'ideal ms', 'mean RTT ms', 'migrations', 'aborted', 'post-copy', 'moved', 'mean downtime ms'],
      cmp.policies.map((p) => [p.policy, p.sensitiveUserRttMs, p.p95SensitiveUserRttMs, p.idealSensitiveUserRttMs, p.meanUserRttMs,
        p.migrations.completed, p.migrations.aborted, p.migrations.postCopy, fmtBytes(p.bytesMoved), p.meanDowntimeMs]),
    ),
    '',
    '"felt RTT" weights each VM\'s users\' RTT by how latency-sensitive its activity is at the time;',
    '"ideal" is the same if every VM always sat at its users\' nearest site.',
  ];
  return lines.join('\n');
}

