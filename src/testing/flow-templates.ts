// A Map-based TemplateStore for tests: no expiry, no bound (the collector's TemplateCache has both).

import type { Template, TemplateStore } from '../telemetry/flow.js';
import type { ExporterOptions, ExporterOptionsStore } from '../telemetry/decoders/index.js';
import { sameLayout } from '../telemetry/decoders/template-records.js';

export class MapTemplateStore implements TemplateStore, ExporterOptionsStore {
  readonly templates = new Map<string, Template>();
  readonly options = new Map<string, ExporterOptions>();

  get(exporter: string, domain: number, templateId: number): Template | undefined {
    return this.templates.get(`${exporter}|${domain}|${templateId}`);
  }

  set(exporter: string, domain: number, template: Template, _nowMs: number): 'new' | 'same' | 'changed' {
    const k = `${exporter}|${domain}|${template.id}`;
    const old = this.templates.get(k);
    this.templates.set(k, template);
    if (old === undefined) return 'new';
    return sameLayout(old, template) ? 'same' : 'changed';
  }

  delete(exporter: string, domain: number, templateId: number): void {
    this.templates.delete(`${exporter}|${domain}|${templateId}`);
  }

  getOptions(exporter: string, domain: number): ExporterOptions | undefined {
    return this.options.get(`${exporter}|${domain}`);
  }

  setOptions(exporter: string, domain: number, options: ExporterOptions, _nowMs: number): void {
    this.options.set(`${exporter}|${domain}`, options);
  }

  clear(): void {
    this.templates.clear();
    this.options.clear();
  }
}
