import type { ExporterOptions, ExporterOptionsStore } from './decoders/template-records.js';
import type { Template } from './flow.js';

export interface TemplateCacheOptions {
  /** A template not refreshed for this long is forgotten (RFC 7011 §8.4: template lifetime over UDP). */
  readonly ttlMs: number;
  /** At most this many templates across all exporters; the least recently refreshed goes first. */
  readonly maxTemplates: number;
}

function sameLayout(a: Template, b: Template): boolean {
  return a.isOptions === b.isOptions && a.scopeCount === b.scopeCount && a.fields.length === b.fields.length
    && a.fields.every((f, i) => {
      const g = b.fields[i]!;
      return f.id === g.id && f.length === g.length && f.enterprise === g.enterprise;
    });
}

/**
 * Templates per (exporter, observation domain, template id), with expiry and a hard bound, so a
 * collector's memory stays bounded whatever exporters send.
 */
export class TemplateCache implements ExporterOptionsStore {
  // Insertion order is refresh order: a refreshed template is deleted and re-inserted.
  private readonly map = new Map<string, { t: Template; atMs: number }>();
  /** Options an exporter sent (system init time, sampling rate), per domain; same lifetime and bound. */
  private readonly options = new Map<string, { o: ExporterOptions; atMs: number }>();
  expired = 0;
  evicted = 0;
  changed = 0;
  // The last lookups' answers: an exporter sends data set after data set with one template, so most
  // lookups repeat the one before. Any change to the maps starts a new generation, voiding them.
  private gen = 0;
  private last = { gen: -1, exporter: '', domain: 0, id: 0, t: undefined as Template | undefined };
  private lastOptions = { gen: -1, exporter: '', domain: 0, o: undefined as ExporterOptions | undefined };

  constructor(private readonly opts: TemplateCacheOptions) {}

  get size(): number {
    return this.map.size;
  }

  private key(exporter: string, domain: number, id: number): string {
    return `${exporter}|${domain}|${id}`;
  }

  get(exporter: string, domain: number, templateId: number): Template | undefined {
    const m = this.last;
    if (m.gen === this.gen && m.id === templateId && m.domain === domain && m.exporter === exporter) return m.t;
    const t = this.map.get(this.key(exporter, domain, templateId))?.t;
    this.last = { gen: this.gen, exporter, domain, id: templateId, t };
    return t;
  }

  set(exporter: string, domain: number, template: Template, nowMs: number): 'new' | 'same' | 'changed' {
    const k = this.key(exporter, domain, template.id);
    const old = this.map.get(k);
    this.gen++;
    this.map.delete(k);
    this.map.set(k, { t: template, atMs: nowMs });
    if (old === undefined) {
      while (this.map.size > this.opts.maxTemplates) {
        const first = this.map.keys().next().value as string;
        this.map.delete(first);
        this.evicted++;
      }
      return 'new';
    }
    if (sameLayout(old.t, template)) return 'same';
    this.changed++;
    return 'changed';
  }

  delete(exporter: string, domain: number, templateId: number): void {
    this.gen++;
    this.map.delete(this.key(exporter, domain, templateId));
  }

  getOptions(exporter: string, domain: number): ExporterOptions | undefined {
    const m = this.lastOptions;
    if (m.gen === this.gen && m.domain === domain && m.exporter === exporter) return m.o;
    const o = this.options.get(`${exporter}|${domain}`)?.o;
    this.lastOptions = { gen: this.gen, exporter, domain, o };
    return o;
  }

  setOptions(exporter: string, domain: number, options: ExporterOptions, nowMs: number): void {
    this.gen++;
    const k = `${exporter}|${domain}`;
    this.options.delete(k);
    this.options.set(k, { o: options, atMs: nowMs });
    while (this.options.size > this.opts.maxTemplates) this.options.delete(this.options.keys().next().value as string);
  }

  /** Forgets templates not refreshed within the TTL. */
  expire(nowMs: number): number {
    this.gen++;
    let n = 0;
    for (const [k, v] of this.map) {
      if (nowMs - v.atMs <= this.opts.ttlMs) break; // refresh order: the rest are newer
      this.map.delete(k);
      n++;
    }
    for (const [k, v] of this.options) {
      if (nowMs - v.atMs <= this.opts.ttlMs) break;
      this.options.delete(k);
    }
    this.expired += n;
    return n;
  }
}
