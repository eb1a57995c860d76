import highsModule from 'highs';
import type { LpResult, LpSolver } from '../placement/ilp.js';

/** HiGHS (WebAssembly) behind the LpSolver interface. Loading the module reads its .wasm file once. */
export async function loadHighs(): Promise<LpSolver> {
  // The package's types describe a CommonJS module; under ESM the default export is the loader itself.
  type Loader = typeof highsModule.default;
  const m = highsModule as unknown as Loader | { default: Loader };
  const loader: Loader = typeof m === 'function' ? m : m.default;
  const highs = await loader();
  return {
    solve(lp, opts): LpResult {
      let r;
      try {
        r = highs.solve(lp, { time_limit: opts.timeLimitS, mip_rel_gap: 0, output_flag: false });
      } catch (e) {
        return { status: 'error', detail: `HiGHS rejected the model: ${(e as Error).message}`, values: new Map() };
      }
      const values = new Map<string, number>();
      for (const [name, col] of Object.entries(r.Columns)) values.set(name, (col as { Primal: number }).Primal);
      const status = r.Status === 'Optimal' ? 'optimal'
        : r.Status === 'Time limit reached' ? 'time-limit'
          : r.Status === 'Infeasible' ? 'infeasible' : 'error';
      return { status, detail: `HiGHS status: ${r.Status}`, values };
    },
  };
}
