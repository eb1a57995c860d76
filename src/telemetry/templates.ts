import type { ExporterOptions, ExporterOptionsStore } from './decoders/template-records.js';
import type { Template } from './flow.js';

export interface TemplateCacheOptions {
  /** A template not refreshed for this long is forgotten (RFC 7011 §8.4: template lifetime over UDP). */
  readonly ttlMs: number;
  /** At most this many templates across all exporters; the least recently refreshed goes first. */
  readonly maxTemplates: number;
}

function sameLayout(a: Template, b: Template): boolean {
  return a === b || (a.isOptions === b.isOptions && a.scopeCount === b.scopeCount && a.fields.length === b.fields.length
    && a.fields.every((f, i) => {
      const g = b.fields[i]!;
      return f.id === g.id && f.length === g.length && f.enterprise === g.enterprise;
    }));
}

/** An entry of a RecencyMap: a value, when it was last set, and its neighbours in refresh order. */
interface Entry<V> {
  value: V;
  atMs: number;
  readonly exporter: string;
  readonly key: number;
  /** Older and newer neighbours; null at the ends. */
  older: Entry<V> | null;
  newer: Entry<V> | null;
  live: boolean;
}

/**
 * Values by (exporter, number), in refresh order, bounded. Keyed by the exporter's own string (its hash
 * is kept in the string) and a number, so a lookup builds no key; refresh order is a linked list through
 * the entries, so refreshing one (every template, every few datagrams) moves two pointers.
 */
class RecencyMap<V> {
  private readonly byExporter = new Map<string, Map<number, Entry<V>>>();
  private oldest: Entry<V> | null = null;
  private newest: Entry<V> | null = null;
  size = 0;

  get(exporter: string, key: number): Entry<V> | undefined {
    return this.byExporter.get(exporter)?.get(key);
  }

  /** Sets and refreshes; returns the entry and its value before (undefined when new). */
  set(exporter: string, key: number, value: V, nowMs: number): { entry: Entry<V>; before: V | undefined } {
    let inner = this.byExporter.get(exporter);
    if (inner === undefined) {
      inner = new Map();
      this.byExporter.set(exporter, inner);
    }
    let e = inner.get(key);
    if (e !== undefined) {
      const before = e.value;
      e.value = value;
      e.atMs = nowMs;
      if (e !== this.newest) {
        this.unlink(e);
        this.append(e);
      }
      return { entry: e, before };
    }
    e = { value, atMs: nowMs, exporter, key, older: null, newer: null, live: true };
    inner.set(key, e);
    this.append(e);
    this.size++;
    return { entry: e, before: undefined };
  }

  delete(e: Entry<V>): void {
    const inner = this.byExporter.get(e.exporter)!;
    inner.delete(e.key);
    if (inner.size === 0) this.byExporter.delete(e.exporter);
    this.unlink(e);
    e.live = false;
    this.size--;
  }

  /** The least recently set entry. */
  get first(): Entry<V> | null {
    return this.oldest;
  }

  private unlink(e: Entry<V>): void {
    if (e.older !== null) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer !== null) e.newer.older = e.older;
    else this.newest = e.older;
    e.older = null;
    e.newer = null;
  }

  private append(e: Entry<V>): void {
    e.older = this.newest;
    e.newer = null;
    if (this.newest !== null) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
  }
}

/** The number a template is kept under for its exporter: domain (32 bits) and template id (16 bits), exactly. */
const templateKey = (domain: number, id: number): number => domain * 65536 + id;

/**
 * Templates per (exporter, observation domain, template id), with expiry and a hard bound, so a
 * collector's memory stays bounded whatever exporters send.
 */
export class TemplateCache implements ExporterOptionsStore {
  private readonly map = new RecencyMap<Template>();
  /** Options an exporter sent (system init time, sampling rate), per domain; same lifetime and bound. */
  private readonly options = new RecencyMap<ExporterOptions>();
  expired = 0;
  evicted = 0;
  changed = 0;
  // The last lookup's entry: an exporter sends data set after data set with one template, so most
  // lookups repeat the one before. An entry removed from the map is marked, voiding it here.
  private last: Entry<Template> | null = null;
  private lastDomain = -1;
  private lastId = -1;

  constructor(private readonly opts: TemplateCacheOptions) {}

  get size(): number {
    return this.map.size;
  }

  get(exporter: string, domain: number, templateId: number): Template | undefined {
    const m = this.last;
    if (m !== null && m.live && this.lastId === templateId && this.lastDomain === domain && m.exporter === exporter) return m.value;
    const e = this.map.get(exporter, templateKey(domain, templateId));
    if (e === undefined) return undefined;
    this.last = e;
    this.lastDomain = domain;
    this.lastId = templateId;
    return e.value;
  }

  set(exporter: string, domain: number, template: Template, nowMs: number): 'new' | 'same' | 'changed' {
    const { before } = this.map.set(exporter, templateKey(domain, template.id), template, nowMs);
    if (before === undefined) {
      while (this.map.size > this.opts.maxTemplates) {
        this.map.delete(this.map.first!);
        this.evicted++;
      }
      return 'new';
    }
    if (sameLayout(before, template)) return 'same';
    this.changed++;
    return 'changed';
  }

  delete(exporter: string, domain: number, templateId: number): void {
    const e = this.map.get(exporter, templateKey(domain, templateId));
    if (e !== undefined) this.map.delete(e);
  }

  getOptions(exporter: string, domain: number): ExporterOptions | undefined {
    return this.options.get(exporter, domain)?.value;
  }

  setOptions(exporter: string, domain: number, options: ExporterOptions, nowMs: number): void {
    this.options.set(exporter, domain, options, nowMs);
    while (this.options.size > this.opts.maxTemplates) this.options.delete(this.options.first!);
  }

  /** Forgets templates not refreshed within the TTL. */
  expire(nowMs: number): number {
    let n = 0;
    // Refresh order: the first one still fresh means the rest are too.
    for (let e = this.map.first; e !== null && nowMs - e.atMs > this.opts.ttlMs; e = this.map.first) {
      this.map.delete(e);
      n++;
    }
    for (let e = this.options.first; e !== null && nowMs - e.atMs > this.opts.ttlMs; e = this.options.first) this.options.delete(e);
    this.expired += n;
    return n;
  }
}
