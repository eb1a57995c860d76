// PURE: the driver's request for a planned move, from the VM's record and the link it crosses.
import type { HostRecord, LinkRecord, VmRecord } from '../store/records.js';
import type { MigrationPolicy, MigrationRequest } from '../migration/driver.js';
import type { Move } from '../placement/plan.js';

/** A desktop's default: a pause the user hardly notices, raised on a stall before giving up; encrypted. */
export const DEFAULT_MIGRATION_POLICY: MigrationPolicy = Object.freeze<MigrationPolicy>({
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000,
  onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 3_600_000,
});

/** GiB of disk the destination still needs: its replica's delta ("*" for every site not listed), else all of it. */
export function diskToCopyGiB(vm: Pick<VmRecord, 'diskGiB' | 'diskDeltaGiB'>, to: string): number {
  return vm.diskDeltaGiB[to] ?? vm.diskDeltaGiB['*'] ?? vm.diskGiB;
}

export function requestForMove(policy: MigrationPolicy = DEFAULT_MIGRATION_POLICY) {
  return (move: Move, jobId: string, vm: VmRecord, link: LinkRecord, hosts: readonly HostRecord[]): MigrationRequest => {
    // The destination host: the first of the site's (by id); the driver's placement decides within a site.
    const dest = hosts.filter((h) => h.siteId === move.to).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))[0];
    const diskGiB = diskToCopyGiB(vm, move.to);
    return {
      jobId,
      vm: vm.id,
      from: { siteId: move.from, hostId: vm.siteId === move.from ? vm.hostId : null },
      to: { siteId: move.to, hostId: dest?.id ?? null },
      link: { rttMs: link.rttMs, bandwidthMbps: link.bandwidthMbps, foregroundShare: link.foregroundShare, lossPct: 0 },
      shape: { memoryMiB: vm.memoryMiB, dirtyRateMiBps: vm.dirtyRateMiBps, workingSetMiB: vm.workingSetMiB, diskGiB },
      storage: diskGiB > 0 ? 'mirror' : 'shared',
      policy,
    };
  };
}
