// Settings: the manager's mode, round interval, planner and its parameters.
import { InputError } from '../../core/errors.js';
import { DEFAULT_PLAN_PARAMS, parsePlanParams } from '../../placement/params.js';
import type { Settings } from '../../store/records.js';
import type { SettingsPatch } from '../control.js';
import { type Api, type ApiDeps, actorOf } from './context.js';
import { ApiError } from './errors.js';

/** The id the loop keeps its settings under (loop.ts, store/repos.ts). */
const SETTINGS_DOC_ID = 'manager';
import { Settings as SettingsSchema, SettingsPatchBody, errorResponses, responses, NoQuery } from './schemas.js';

/** The stored settings over the manager's defaults, as the loop reads them; null if neither exists. */
async function currentSettings(deps: ApiDeps): Promise<Settings | null> {
  const d = await deps.store.get<Partial<Settings>>('settings', SETTINGS_DOC_ID);
  const dflt = deps.settingsDefaults;
  if (d === null) return dflt;
  if (dflt === null) return d.value as Settings;
  return { ...dflt, ...d.value, params: { ...dflt.params, ...d.value.params } };
}

export function registerSettings(app: Api, deps: ApiDeps): void {
  app.get('/v1/settings', {
    schema: {
      querystring: NoQuery,
      tags: ['settings'], summary: 'The current settings',
      response: responses({ 200: SettingsSchema, ...errorResponses(401, 404) }),
    },
  }, async () => {
    const s = await currentSettings(deps);
    if (s === null) throw new ApiError('NOT_FOUND', 'no settings are stored yet: the manager records them when it starts');
    return s;
  });

  app.patch('/v1/settings', {
    schema: {
      querystring: NoQuery,
      tags: ['settings'],
      summary: 'Change settings; params are merged into the current ones and checked together',
      body: SettingsPatchBody,
      response: responses({ 200: SettingsSchema, ...errorResponses(400, 401, 403, 409, 413, 503) }),
    },
  }, async (req) => {
    const body = req.body;
    if (body.params !== undefined) {
      // Cross-field rules (maxCooldownMs ≥ baseCooldownMs, evictable below minSensitivity) hold for the merge.
      const base = (await currentSettings(deps))?.params ?? DEFAULT_PLAN_PARAMS;
      try {
        parsePlanParams({ ...base, ...body.params }, 'body.params');
      } catch (e) {
        if (e instanceof InputError) {
          const current = (base as unknown as Record<string, unknown>)[e.field.split('.').pop() ?? ''];
          throw new ApiError('INPUT_INVALID', `${e.message}; the current value is ${JSON.stringify(current)}`, { field: e.field, cause: e });
        }
        throw e;
      }
    }
    const patch: SettingsPatch = {
      ...(body.mode !== undefined ? { mode: body.mode } : {}),
      ...(body.roundIntervalS !== undefined ? { roundIntervalS: body.roundIntervalS } : {}),
      ...(body.planner !== undefined ? { planner: body.planner } : {}),
      ...(body.params !== undefined ? { params: body.params as SettingsPatch['params'] } : {}),
    };
    return deps.control.updateSettings(patch, actorOf(req));
  });
}
