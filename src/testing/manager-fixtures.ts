// A two-site inventory and its traffic, for tests that start the whole manager.
import { conversation } from './fp-fixtures.js';

const DESK = '10.77.0.10';
const BULK = '10.77.0.11';
const ALICE = '10.9.0.21';
const SERVER = '10.200.0.5';

export const TWO_SITE_INVENTORY = {
  sites: [
    { id: 'us-east-1', country: 'US', lat: 38.9, lon: -77.4, capacity: { vcpu: 64, memoryMiB: 65536 } },
    { id: 'us-west-2', country: 'US', lat: 45.8, lon: -119.7, capacity: { vcpu: 64, memoryMiB: 65536 } },
  ],
  hosts: [
    { id: 'east-1', siteId: 'us-east-1', capacity: { vcpu: 64, memoryMiB: 65536 } },
    { id: 'west-1', siteId: 'us-west-2', capacity: { vcpu: 64, memoryMiB: 65536 } },
  ],
  links: [{ a: 'us-east-1', b: 'us-west-2', rttMs: 66, bandwidthMbps: 10000, foregroundShare: 0.2 }],
  vms: [
    { id: 'desk1', siteId: 'us-east-1', hostId: 'east-1', vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1, workingSetMiB: 8, addresses: [DESK] },
    { id: 'bulk1', siteId: 'us-east-1', hostId: 'east-1', vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1, workingSetMiB: 8, addresses: [BULK] },
  ],
  users: [{ id: 'alice', endpoint: ALICE, country: 'US', rttMs: { 'us-east-1': 70, 'us-west-2': 4 } }],
};

/** Ten seconds of a desktop playing video to alice over VNC, and of a bulk download, ending now. */
export function trafficNow(desk = DESK, bulk = BULK): ReturnType<typeof conversation> {
  const startMs = Date.now() - 10_000;
  return [
    ...conversation({ vm: desk, remote: ALICE, vmPort: 5900, remotePort: 52000, seconds: 10, ppsOut: 1600, ppsIn: 140, sizeOut: 1400, sizeIn: 60, startMs }),
    ...conversation({ vm: bulk, remote: SERVER, vmPort: 40000, remotePort: 443, seconds: 10, ppsOut: 400, ppsIn: 7000, sizeOut: 52, sizeIn: 1448, startMs }),
  ];
}

