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
export interface RecencyEntry<V> {
  value: V;
  atMs: number;
  readonly exporter: string;
  readonly key: number;
  /** Older and newer neighbours in a ring through the map's root. */
  older: RecencyEntry<V>;
  newer: RecencyEntry<V>;
}

/**
 * Values by (exporter, number), in refresh order, bounded by their owner. Keyed by the exporter's own
 * string (its hash is kept in the string) and a number, so a lookup builds no key; refresh order is a
 * ring of entries through a root entry, so refreshing one (a template every few datagrams, an exporter's
 * sequence every datagram) moves four pointers, with no special case for the ends.
 */
export class RecencyMap<V> {
  private readonly byExporter = new Map<string, Map<number, RecencyEntry<V>>>();
  /** The ring's root: root.newer is the oldest entry, root.older the newest; the root itself when empty. */
  private readonly root: RecencyEntry<V>;
  /** The entry get() found last (forgotten when deleted). */
  private last: RecencyEntry<V> | null = null;
  size = 0;

  constructor(none: V) {
    // The same fields in the same order as every entry (one object shape for the ring's code to handle).
    const root = { value: none, atMs: Number.NaN, exporter: '', key: -1, older: null, newer: null } as unknown as RecencyEntry<V>;
    root.older = root;
    root.newer = root;
    this.root = root;
  }

  get(exporter: string, key: number): RecencyEntry<V> | undefined {
    // Datagrams come in runs from one exporter: the entry found last is most often the one asked for.
    const last = this.last;
    if (last !== null && last.key === key && last.exporter === exporter) return last;
    const e = this.byExporter.get(exporter)?.get(key);
    if (e !== undefined) this.last = e;
    return e;
  }

  /** Adds a new entry (the key must not be in the map), as the newest. */
  add(exporter: string, key: number, value: V, nowMs: number): RecencyEntry<V> {
    let inner = this.byExporter.get(exporter);
    if (inner === undefined) {
      inner = new Map();
      this.byExporter.set(exporter, inner);
    }
    const root = this.root;
    const e: RecencyEntry<V> = { value, atMs: nowMs, exporter, key, older: root.older, newer: root };
    root.older.newer = e;
    root.older = e;
    inner.set(key, e);
    this.size++;
    return e;
  }

  /** Makes an entry the newest, set at nowMs. */
  refresh(e: RecencyEntry<V>, nowMs: number): void {
    e.atMs = nowMs;
    const root = this.root;
    if (root.older === e) return;
    e.older.newer = e.newer;
    e.newer.older = e.older;
    e.older = root.older;
    e.newer = root;
    root.older.newer = e;
    root.older = e;
  }

  delete(e: RecencyEntry<V>): void {
    const inner = this.byExporter.get(e.exporter)!;
    inner.delete(e.key);
    if (inner.size === 0) this.byExporter.delete(e.exporter);
    e.older.newer = e.newer;
    e.newer.older = e.older;
    if (e === this.last) this.last = null;
    this.size--;
  }

  /** The least recently set entry, or undefined when empty. */
  get first(): RecencyEntry<V> | undefined {
    const e = this.root.newer;
    return e === this.root ? undefined : e;
  }
}

/** The number a template is kept under for its exporter: domain (32 bits) and template id (16 bits), exactly. */
const templateKey = (domain: number, id: number): number => domain * 65536 + id;

/**
 * Templates per (exporter, observation domain, template id), with expiry and a hard bound, so a
 * collector's memory stays bounded whatever exporters send.
 */
export class TemplateCache implements ExporterOptionsStore {
  private readonly map = new RecencyMap<Template | undefined>(undefined);
  /** Options an exporter sent (system init time, sampling rate), per domain; same lifetime and bound. */
  private readonly options = new RecencyMap<ExporterOptions | undefined>(undefined);
  expired = 0;
  evicted = 0;
  changed = 0;
  // The last lookup's entry: an exporter sends data set after data set with one template, so most
  // lookups repeat the one before. Removing that entry from the map forgets it here too (remove()).
  private last: RecencyEntry<Template | undefined> | null = null;
  private lastDomain = -1;
  private lastId = -1;

  constructor(private readonly opts: TemplateCacheOptions) {}

  get size(): number {
    return this.map.size;
  }

  get(exporter: string, domain: number, templateId: number): Template | undefined {
    const m = this.last;
    if (m !== null && this.lastId === templateId && this.lastDomain === domain && m.exporter === exporter) return m.value;
    const e = this.map.get(exporter, templateKey(domain, templateId));
    if (e === undefined) return undefined;
    this.last = e;
    this.lastDomain = domain;
    this.lastId = templateId;
    return e.value;
  }

  set(exporter: string, domain: number, template: Template, nowMs: number): 'new' | 'same' | 'changed' {
    const e = this.map.get(exporter, templateKey(domain, template.id));
    if (e === undefined) {
      this.map.add(exporter, templateKey(domain, template.id), template, nowMs);
      while (this.map.size > this.opts.maxTemplates) {
        this.remove(this.map.first!);
        this.evicted++;
      }
      return 'new';
    }
    const before = e.value!;
    e.value = template;
    this.map.refresh(e, nowMs);
    if (sameLayout(before, template)) return 'same';
    this.changed++;
    return 'changed';
  }

  delete(exporter: string, domain: number, templateId: number): void {
    const e = this.map.get(exporter, templateKey(domain, templateId));
    if (e !== undefined) this.remove(e);
  }

  private remove(e: RecencyEntry<Template | undefined>): void {
    this.map.delete(e);
    if (e === this.last) this.last = null;
  }

  getOptions(exporter: string, domain: number): ExporterOptions | undefined {
    return this.options.get(exporter, domain)?.value;
  }

  setOptions(exporter: string, domain: number, options: ExporterOptions, nowMs: number): void {
    const e = this.options.get(exporter, domain);
    if (e !== undefined) {
      e.value = options;
      this.options.refresh(e, nowMs);
      return;
    }
    this.options.add(exporter, domain, options, nowMs);
    while (this.options.size > this.opts.maxTemplates) this.options.delete(this.options.first!);
  }

  /** Forgets templates not refreshed within the TTL. */
  expire(nowMs: number): number {
    let n = 0;
    // Refresh order: the first one still fresh means the rest are too.
    for (let e = this.map.first; e !== undefined && !(nowMs - e.atMs <= this.opts.ttlMs); e = this.map.first) {
      this.remove(e);
      n++;
    }
    for (let e = this.options.first; e !== undefined && !(nowMs - e.atMs <= this.opts.ttlMs); e = this.options.first) this.options.delete(e);
    this.expired += n;
    return n;
  }
}
