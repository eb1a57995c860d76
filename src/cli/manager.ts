// `vmshadow manager`: reads the configuration (flags > environment > file), starts the manager and runs
// until SIGINT/SIGTERM (a clean stop hands the leadership over at once) or until it loses the leadership.
import { hostname } from 'node:os';
import { builtDashboardDir } from '../web/build.js';
import { DEFAULT_CONFIG_FILE, loadManagerConfig, MANAGER_USAGE } from '../manager/config.js';
import { startManager } from '../manager/main.js';

export async function cmdManager(argv: string[], io: { out: (s: string) => void; err: { write(s: string): unknown } }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(MANAGER_USAGE);
    return 0;
  }
  const cfg = loadManagerConfig({ argv, env: process.env, file: DEFAULT_CONFIG_FILE, hostname: hostname() });
  const m = await startManager(cfg, { out: io.out, dashboardDir: builtDashboardDir() });
  io.out(`manager ${m.replica} listening on ${m.url} (dashboard ${m.url}/, API ${m.url}/v1, docs ${m.url}/docs, metrics ${m.url}/metrics); store ${m.store.location}\n`);
  const why = await new Promise<string>((resolve) => {
    const stop = (sig: string) => (): void => resolve(`received ${sig}`);
    process.once('SIGINT', stop('SIGINT'));
    process.once('SIGTERM', stop('SIGTERM'));
    void m.stopped.then(resolve);
  });
  io.err.write(`vmshadow manager: stopping (${why})\n`);
  await m.close();
  return why === 'lost the leadership' ? 1 : 0;
}
