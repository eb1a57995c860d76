/// <reference lib="dom" />
// Browser-only: the world map. Countries come from the page's own world.json (world-atlas 110m converted to
// GeoJSON at build time), projected by d3-geo in the browser; no tiles, nothing fetched off the origin.
// Sites are squares, users dots, and each user is joined to the site of every VM serving them by a great-circle
// line coloured by that RTT.
import { geoGraticule10, geoNaturalEarth1, geoPath } from 'd3-geo';
import type { FeatureCollection } from 'geojson';
import { s } from './dom.js';
import { fmtMs, mapFrame, rttClass } from './format.js';
import { serveLines, type DashState } from './state.js';
import type { SiteRecord } from '../../store/records.js';

export interface MapView {
  draw(state: DashState): void;
}

/** Antarctica (ISO 3166 numeric 010) holds no site or user: never part of the frame. */
const ANTARCTICA = '010';

/**
 * The map is drawn at the pixel size it is shown at (so labels stay 12 px on a phone) and framed on the sites
 * and users (mapFrame); it is laid out again when its box changes size or the places to frame change.
 */
export function createMap(svg: SVGSVGElement, tooltip: HTMLElement, world: FeatureCollection | null): MapView {
  const sphere = { type: 'Sphere' } as const;
  const inhabited: FeatureCollection | null = world === null
    ? null
    : { type: 'FeatureCollection', features: world.features.filter((f) => String(f.id) !== ANTARCTICA) };
  const projection = geoNaturalEarth1();
  const path = geoPath(projection);
  const base = s('g', { class: 'base' });
  const overlay = s('g', { class: 'overlay' });
  svg.replaceChildren(base, overlay);
  svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
  let layoutKey = '';
  let last: DashState | null = null;
  let mapWidth = 960;

  const layout = (state: DashState): void => {
    const width = Math.max(280, Math.round(svg.parentElement?.clientWidth ?? 960));
    const height = Math.round(Math.min(520, Math.max(200, width * 0.5)));
    mapWidth = width;
    const places: [number, number][] = [
      ...state.sites.map((x): [number, number] => [x.lon, x.lat]),
      ...Object.values(state.users).flatMap((u): [number, number][] => (u.lat == null || u.lon == null ? [] : [[u.lon, u.lat]])),
    ];
    const frame = mapFrame(places);
    const key = `${width}x${height} ${frame === null ? 'world' : `${frame.lon0},${frame.lon1},${frame.lat0},${frame.lat1}`}`;
    if (key === layoutKey) return;
    layoutKey = key;
    const pad = 10;
    if (frame === null) {
      projection.fitExtent([[pad, pad], [width - pad, height - pad]], inhabited ?? sphere);
    } else {
      // The frame's outline, sampled along its edges (a projected parallel curves).
      const ring: [number, number][] = [];
      for (let i = 0; i <= 8; i++) {
        const lon = frame.lon0 + ((frame.lon1 - frame.lon0) * i) / 8;
        ring.push([lon, frame.lat0], [lon, frame.lat1]);
      }
      for (let i = 0; i <= 4; i++) {
        const lat = frame.lat0 + ((frame.lat1 - frame.lat0) * i) / 4;
        ring.push([frame.lon0, lat], [frame.lon1, lat]);
      }
      projection.fitExtent([[pad, pad], [width - pad, height - pad]], { type: 'MultiPoint', coordinates: ring });
    }
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    base.replaceChildren(
      s('rect', { class: 'sea', x: 0, y: 0, width, height, rx: 6 }),
      s('path', { class: 'graticule', d: path(geoGraticule10()) ?? '' }),
      inhabited === null ? s('path', { class: 'sphere', d: path(sphere) ?? '' }) : s('path', { class: 'land', d: path(inhabited) ?? '' }),
    );
  };

  const showTip = (ev: PointerEvent, lines: readonly string[]): void => {
    tooltip.replaceChildren(...lines.map((l, i) => {
      const d = document.createElement('div');
      if (i === 0) d.className = 'tip-title';
      d.textContent = l;
      return d;
    }));
    const host = tooltip.offsetParent instanceof HTMLElement ? tooltip.offsetParent : svg.parentElement;
    const box = host?.getBoundingClientRect() ?? { left: 0, top: 0, width: 0 };
    tooltip.hidden = false;
    const x = ev.clientX - box.left + 12;
    const maxX = Math.max(0, box.width - tooltip.offsetWidth - 4);
    tooltip.style.left = `${Math.min(x, maxX)}px`;
    tooltip.style.top = `${ev.clientY - box.top + 12}px`;
  };
  const hideTip = (): void => {
    tooltip.hidden = true;
  };
  const hover = (el: SVGElement, lines: () => readonly string[]): void => {
    el.addEventListener('pointerenter', (ev) => showTip(ev, lines()));
    el.addEventListener('pointermove', (ev) => showTip(ev, lines()));
    el.addEventListener('pointerleave', hideTip);
    // A tap on a phone shows it too (there is no hover there).
    el.addEventListener('click', (ev) => showTip(ev, lines()));
  };

  let resizeQueued = false;
  new ResizeObserver(() => {
    if (resizeQueued || last === null) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      if (last !== null) view.draw(last);
    });
  }).observe(svg.parentElement ?? svg);

  const view: MapView = {
    draw(state) {
      last = state;
      hideTip();
      layout(state);
      const sites = new Map<string, SiteRecord>(state.sites.map((x) => [x.id, x]));
      const siteName = (id: string): string => sites.get(id)?.name ?? id;
      const lines = s('g', { class: 'lines' });
      for (const l of serveLines(state)) {
        const user = state.users[l.userId];
        const site = sites.get(l.siteId);
        const vm = state.vms[l.vmId];
        if (user?.lat == null || user.lon == null || site === undefined || vm === undefined) continue;
        const d = path({ type: 'LineString', coordinates: [[user.lon, user.lat], [site.lon, site.lat]] });
        if (d === null) continue;
        const best = Object.entries(user.rtt).reduce<[string, number] | null>(
          (b, [sid, r]) => (b === null || r.rttMs < b[1] ? [sid, r.rttMs] : b), null);
        const el = s('path', {
          class: `serve rtt-${rttClass(l.rttMs)}`, d, 'data-user': user.id, 'data-vm': vm.id, 'data-site': site.id,
        });
        hover(el, () => [
          `${user.name} → ${vm.name}`,
          `served from ${siteName(site.id)}: ${fmtMs(l.rttMs)}`,
          best === null ? 'best site: unknown' : `best site: ${siteName(best[0])} ${fmtMs(best[1])}`,
        ]);
        lines.append(el);
      }

      const userDots = s('g', { class: 'users' });
      for (const u of Object.values(state.users)) {
        if (u.lat == null || u.lon == null) continue;
        const p = projection([u.lon, u.lat]);
        if (p == null) continue;
        const el = s('circle', { class: 'user', cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 4, 'data-user': u.id });
        hover(el, () => [
          `${u.name} (${u.country ?? '?'}, ${u.network})`,
          ...Object.entries(u.rtt)
            .sort((a, b) => a[1].rttMs - b[1].rttMs)
            .map(([sid, r]) => `${siteName(sid)}: ${fmtMs(r.rttMs)}${r.stale ? ' (stale)' : ''} · ${r.source}`),
        ]);
        userDots.append(el);
      }

      const siteMarks = s('g', { class: 'sites' });
      const vmsAt = new Map<string, string[]>();
      for (const vm of Object.values(state.vms)) vmsAt.set(vm.siteId, [...(vmsAt.get(vm.siteId) ?? []), vm.name]);
      for (const site of state.sites) {
        const p = projection([site.lon, site.lat]);
        if (p == null) continue;
        const size = 12;
        const g = s('g', { class: 'site', 'data-site': site.id, transform: `translate(${p[0].toFixed(1)},${p[1].toFixed(1)})` },
          s('rect', { x: -size / 2, y: -size / 2, width: size, height: size }),
          // Near the right edge the name goes on the left of its square, where there is room for it.
          p[0] > mapWidth - 8 * site.name.length - 20
            ? s('text', { x: -size / 2 - 3, y: 4, 'text-anchor': 'end' }, site.name)
            : s('text', { x: size / 2 + 3, y: 4 }, site.name),
        );
        hover(g, () => {
          const vms = vmsAt.get(site.id) ?? [];
          return [
            `${site.name} (${site.region}, ${site.country})`,
            `${vms.length} VM${vms.length === 1 ? '' : 's'}${vms.length > 0 ? `: ${vms.slice(0, 8).join(', ')}${vms.length > 8 ? ', …' : ''}` : ''}`,
            `capacity ${site.capacity.vcpu} vCPU, ${site.capacity.memoryMiB} MiB`,
          ];
        });
        siteMarks.append(g);
      }
      // Users over sites: a user in a site's city stays visible on its square.
      overlay.replaceChildren(lines, siteMarks, userDots);
    },
  };
  return view;
}
