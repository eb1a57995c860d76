import type { LpSolver } from '../placement/ilp.js';
import { simulate, type PolicyName, type PolicyResult } from './engine.js';
import type { Scenario } from './scenario.js';

export interface Comparison {
  readonly scenario: string;
  readonly seed: number;
  readonly durationS: number;
  readonly sites: number;
  readonly vms: number;
  readonly policies: readonly PolicyResult[];
}

/** Runs one scenario under each policy, one after another, and gathers the results side by side. */
export function comparePolicies(sc: Scenario, policies: readonly PolicyName[], opts: {
  solver?: LpSolver;
  recordSeries?: boolean;
  onProgress?: (policy: PolicyName, fraction: number) => void;
} = {}): Comparison {
  const results = policies.map((policy) => simulate(sc, {
    policy,
    ...(opts.solver !== undefined ? { solver: opts.solver } : {}),
    ...(opts.recordSeries !== undefined ? { recordSeries: opts.recordSeries } : {}),
    onProgress: (f) => opts.onProgress?.(policy, f),
  }));
  return {
    scenario: sc.name, seed: sc.seed, durationS: sc.durationS,
    sites: sc.cloud.sites.length, vms: sc.cloud.vms.length, policies: results,
  };
}
