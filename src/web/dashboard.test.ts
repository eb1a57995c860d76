// The dashboard in a real headless browser (Debian's chromium through playwright-core, never a downloaded
// one) against the real API (buildApi) on a real SQLite store holding the lab's cloud, with a fake
// ManagerControl and a real EventBus the test publishes on. Screenshots go to test-artifacts/.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { silentLogger } from '../core/logger.js';
import { siteId, vmId } from '../core/ids.js';
import { ensureTokens } from '../manager/auth.js';
import { buildApi } from '../manager/api/server.js';
import { createEventBus, type EventBus } from '../manager/events.js';
import { createMetrics } from '../manager/metrics.js';
import { applyEvent } from '../migration/job.js';
import { openStore } from '../store/open.js';
import type { PlanRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import { createFakeControl, type FakeControl } from '../testing/fake-control.js';
import { fmtMs, rttClass } from './app/format.js';
import { buildDashboard } from './build.js';
import { progressOf, seedLab, type LabSeed } from './lab-fixture.js';

const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS_DIR = process.env.VMSHADOW_TEST_ARTIFACTS ?? fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
const ADMIN_TOKEN = 'vsa_dashboard-test-admin-token-0001';
const WAIT_MS = 10_000;

const noBrowser = existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (apt-get install chromium)`;

describe('the dashboard in chromium, served by the API with the lab cloud', { skip: noBrowser, timeout: 180_000 }, () => {
  let dir: string;
  let store: Store;
  let events: EventBus;
  let control: FakeControl;
  let app: Awaited<ReturnType<typeof buildApi>>;
  let base: string;
  let browser: Browser;
  let seed: LabSeed;
  const offOrigin: string[] = [];
  const contexts: BrowserContext[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmshadow-dashboard-'));
    await mkdir(ARTIFACTS_DIR, { recursive: true });
    const web = await buildDashboard({ outDir: join(dir, 'web') });
    store = await openStore(`sqlite:${join(dir, 'vmshadow.db')}`);
    seed = await seedLab(store, Date.now());
    await ensureTokens(store, { adminToken: ADMIN_TOKEN });
    events = createEventBus();
    control = createFakeControl(store, { replica: 'lab-manager' });
    app = await buildApi({
      store, control, events, metrics: createMetrics(), log: silentLogger, openReads: true,
      dashboardDir: web.outDir, settingsDefaults: seed.settings,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    base = `http://127.0.0.1:${addr.port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await app?.close();
    await store?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** A fresh browser context (own localStorage) at the given size, recording console errors and every request. */
  async function open(width: number, height: number, opts: { mobile?: boolean } = {}): Promise<{ page: Page; errors: string[] }> {
    const ctx = await browser.newContext({
      viewport: { width, height }, deviceScaleFactor: 1, isMobile: opts.mobile === true, hasTouch: opts.mobile === true,
    });
    contexts.push(ctx);
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (!r.url().startsWith(`${base}/`) && !r.url().startsWith('data:')) offOrigin.push(r.url());
    });
    await page.goto(`${base}/`, { waitUntil: 'load' });
    // Loaded, drawn, and the event stream open (the API subscribed it to the bus).
    await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', undefined, { timeout: WAIT_MS });
    await page.waitForSelector('.stream-live', { timeout: WAIT_MS });
    return { page, errors };
  }

  const shot = (page: Page, name: string, fullPage = false): Promise<Buffer> =>
    page.screenshot({ path: join(ARTIFACTS_DIR, `dashboard-${name}.png`), fullPage });

  async function waitForListeners(n: number): Promise<void> {
    const until = Date.now() + WAIT_MS;
    while (events.listeners < n) {
      if (Date.now() > until) throw new Error(`the API has ${events.listeners} event listeners, expected ${n}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it("loads without console errors and shows the lab's 3 sites, 2 users and 2 VMs, lines coloured by RTT", async () => {
    const { page, errors } = await open(1280, 800);
    await page.waitForFunction(() => document.querySelectorAll('#vm-rows tr').length === 2, undefined, { timeout: WAIT_MS });

    const sites = await page.$$eval('#map g.site', (els) => els.map((e) => e.getAttribute('data-site')));
    assert.deepEqual(sites.sort(), ['eu-west-1', 'us-east-1', 'us-west-2']);
    assert.equal(await page.locator('#map circle.user').count(), 2);
    assert.ok((await page.locator('#map path.land').getAttribute('d') ?? '').length > 10_000, 'the countries are drawn');

    const rows = await page.$$eval('#vm-rows tr', (trs) => trs.map((tr) => ({
      vm: tr.getAttribute('data-vm'), site: tr.querySelector('.vm-site')?.textContent, text: tr.textContent ?? '',
    })));
    assert.deepEqual(rows.map((r) => [r.vm, r.site]), [['desk1', 'us-east-1'], ['desk2', 'us-east-1']]);
    assert.match(rows[0]!.text, /remote-desktop/);
    assert.match(rows[0]!.text, /0\.86/);
    assert.equal(await page.locator('#vm-rows tr[data-vm="desk1"] .spark polyline').getAttribute('points').then((p) => (p ?? '').split(' ').length), 12,
      'the sparkline has one point per stored fingerprint');

    // Each user's line goes to the site of the VM serving them, coloured by that RTT.
    for (const user of seed.users) {
      const vm = seed.vms.find((v) => v.users.some((u) => u.userId === user.id))!;
      const cls = await page.locator(`#map path.serve[data-user="${user.id}"]`).getAttribute('class');
      assert.equal(cls, `serve rtt-${rttClass(user.rtt[vm.siteId]!.rttMs)}`, `${user.name}'s line`);
    }
    // desk1's user alice is nearest us-west-2: the table says how much better it would be there.
    const desk1 = await page.locator('#vm-rows tr[data-vm="desk1"]').textContent();
    const alice = seed.users.find((u) => u.name === 'alice')!;
    assert.match(desk1 ?? '', new RegExp(`${fmtMs(alice.rtt['us-east-1']!.rttMs)} now · best ${fmtMs(alice.rtt['us-west-2']!.rttMs)} at us-west-2`));

    const header = await page.locator('#facts').textContent();
    assert.match(header ?? '', /Replicalab-manager/);
    assert.match(header ?? '', /Modeapprove/);
    assert.match(header ?? '', /Next round(in \d+ s|due now)/);

    // Hovering bob's line (half-way along it) tells the RTT now and the best site's.
    const bob = seed.users.find((u) => u.name === 'bob')!;
    const mid = await page.locator(`#map path.serve[data-user="${bob.id}"]`).evaluate((el) => {
      const p = el as SVGPathElement;
      const pt = p.getPointAtLength(p.getTotalLength() / 2).matrixTransform(p.getScreenCTM()!);
      return { x: pt.x, y: pt.y };
    });
    await page.mouse.move(mid.x, mid.y);
    await page.waitForSelector('#tooltip:not([hidden])', { timeout: WAIT_MS });
    assert.match(await page.locator('#tooltip').textContent() ?? '', /^bob → desk2served from us-east-1: [\d.]+ msbest site: eu-west-1 [\d.]+ ms$/);

    await shot(page, '1280x800');
    await shot(page, '1280x800-full', true);
    assert.deepEqual(errors, []);
  });

  it("moves a migration's progress bar as 'progress' events are published, then shows its downtime when it completes", async () => {
    const { page, errors } = await open(1280, 800);
    await waitForListeners(1);
    const job = seed.runningJob;
    const bar = page.locator(`[data-job="${job.id}"] [role=progressbar]`);
    assert.equal(await bar.getAttribute('aria-valuenow'), '25');

    const total = job.move.bytes;
    const t0 = job.createdAtMs;
    for (const pct of [50, 80]) {
      events.publish({ type: 'progress', jobId: job.id, vm: job.vm, progress: progressOf(job.id, Date.now(), t0, total, total * (1 - pct / 100)) });
      await page.waitForFunction((want) => document.querySelector('[role=progressbar]')?.getAttribute('aria-valuenow') === want, String(pct), { timeout: WAIT_MS });
      const width = await page.locator(`[data-job="${job.id}"] .fill`).evaluate((el) => (el as HTMLElement).style.width);
      assert.equal(width, `${pct}%`);
    }
    const stats = await page.locator(`[data-job="${job.id}"] .mig-stats`).textContent();
    assert.match(stats ?? '', /80\.0 % · \d+(\.\d)? MiB of \d+(\.\d)? MiB .*Mbit\/s · ETA \d+ s/);
    await shot(page, 'migration-running');

    const done = applyEvent(job, { type: 'driver-done', status: 'completed', at: 'destination', reason: null }, Date.now());
    assert.ok(done.ok);
    const completed = { ...done.record, outcome: {
      jobId: job.id, status: 'completed' as const, runningAt: { siteId: job.move.to, hostId: null }, durationMs: 42_000,
      downtimeMs: 185, transferredBytes: total * 1.05, settings: [], stallActions: [], reason: null,
    } };
    events.publish({ type: 'migration', job: completed });
    await page.waitForSelector(`[data-job="${job.id}"].ended`, { timeout: WAIT_MS });
    assert.equal(await bar.getAttribute('aria-valuenow'), '100');
    assert.match(await page.locator(`[data-job="${job.id}"] .mig-end`).textContent() ?? '', /downtime 185 ms · took 42 s/);
    // A late progress event does not bring the ended job back.
    events.publish({ type: 'progress', jobId: job.id, vm: job.vm, progress: progressOf(job.id, Date.now(), t0, total, total / 2) });
    await page.waitForTimeout(200);
    assert.equal(await bar.getAttribute('aria-valuenow'), '100');
    assert.deepEqual(errors, []);
  });

  it("redraws from live 'fingerprint', 'user' and 'vm' events: the sparkline grows, a line changes colour, a VM changes site", async () => {
    const { page, errors } = await open(1280, 800);
    await waitForListeners(1);
    const desk2 = seed.vms.find((v) => v.name === 'desk2')!;
    const bob = seed.users.find((u) => u.name === 'bob')!;
    const points = page.locator('#vm-rows tr[data-vm="desk2"] .spark polyline');
    assert.equal(((await points.getAttribute('points')) ?? '').split(' ').length, 12);
    events.publish({
      type: 'fingerprint', vm: desk2.id, atMs: Date.now(),
      point: { score: 0.2, sensitive: false, activity: 'video-streaming', reasons: ['one-way video'], users: [], bytes: 1e6 },
    });
    await page.waitForFunction(() => document.querySelector('#vm-rows tr[data-vm="desk2"] .spark polyline')?.getAttribute('points')?.split(' ').length === 13,
      undefined, { timeout: WAIT_MS });

    // bob's network changes: 150 ms to us-east-1 now, so his line turns red.
    const line = page.locator(`#map path.serve[data-user="${bob.id}"]`);
    assert.notEqual(await line.getAttribute('class'), 'serve rtt-poor');
    events.publish({ type: 'user', user: { ...bob, rtt: { ...bob.rtt, 'us-east-1': { rttMs: 150, source: 'probe', atMs: Date.now(), stale: false } } } });
    await page.waitForFunction((id) => document.querySelector(`#map path.serve[data-user="${id}"]`)?.getAttribute('class') === 'serve rtt-poor', bob.id, { timeout: WAIT_MS });

    // desk2 ends up at eu-west-1: the table says so and bob's line now runs to eu-west-1, green.
    events.publish({ type: 'vm', vm: { ...desk2, siteId: siteId('eu-west-1') } });
    await page.waitForFunction(() => document.querySelector('#vm-rows tr[data-vm="desk2"] .vm-site')?.textContent === 'eu-west-1', undefined, { timeout: WAIT_MS });
    assert.equal(await line.getAttribute('data-site'), 'eu-west-1');
    assert.equal(await line.getAttribute('class'), `serve rtt-${rttClass(bob.rtt['eu-west-1']!.rttMs)}`);
    assert.deepEqual(errors, []);
  });

  it('reconnects when the event stream drops, and catches up with what it missed meanwhile', async () => {
    const { page, errors } = await open(1280, 800);
    await waitForListeners(1);
    app.server.closeAllConnections();
    await page.waitForSelector('.stream-connecting, .stream-down', { timeout: WAIT_MS });
    // Published while no page listens: only a reload after reconnecting can show it.
    const missed: PlanRecord = { ...seed.pendingPlan, id: 'plan-0009', roundId: 'round-0009', atMs: Date.now(), status: 'recommended' };
    await store.put('plans', missed.id, missed, { status: missed.status, group: missed.roundId });
    await page.waitForSelector('.stream-live', { timeout: WAIT_MS });
    await page.locator(`article[data-plan="${missed.id}"]`).waitFor({ timeout: WAIT_MS });
    // The browser may report the dropped stream itself; nothing else went wrong.
    assert.deepEqual(errors.filter((e) => !/\/v1\/events|ERR_(CONNECTION|NETWORK|INCOMPLETE)/.test(e)), []);
  });

  it('lays out in two columns at 1280×800 and one on a 390×844 phone, with no horizontal overflow', async () => {
    for (const [w, hgt, name] of [[1280, 800, 'laptop'], [390, 844, 'phone']] as const) {
      const { page, errors } = await open(w, hgt, { mobile: name === 'phone' });
      const m = await page.evaluate(() => {
        const main = document.querySelector('.col-main')!.getBoundingClientRect();
        const side = document.querySelector('.col-side')!.getBoundingClientRect();
        return {
          scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
          sideBySide: side.left >= main.right - 1 && side.top < main.bottom,
          stacked: side.top >= main.bottom - 1,
          mapWidth: document.querySelector('#map')!.getBoundingClientRect().width,
          // HTML boxes only: the map's country paths run past its edge, clipped by the svg.
          widest: Math.max(...[...document.querySelectorAll('body *:not(svg *)')].map((e) => e.getBoundingClientRect().right)),
        };
      });
      assert.ok(m.scrollWidth <= m.clientWidth, `${name}: the page is ${m.scrollWidth} px wide in a ${m.clientWidth} px window`);
      assert.ok(m.widest <= m.clientWidth + 0.5, `${name}: an element reaches ${m.widest} px in a ${m.clientWidth} px window`);
      if (name === 'laptop') assert.ok(m.sideBySide && !m.stacked, `${name}: two columns`);
      else assert.ok(m.stacked && !m.sideBySide, `${name}: one column`);
      assert.ok(m.mapWidth > (name === 'laptop' ? 600 : 340), `${name}: the map is ${m.mapWidth} px wide`);
      await shot(page, `${w}x${hgt}-${name}`);
      await shot(page, `${w}x${hgt}-${name}-full`, true);
      assert.deepEqual(errors, []);
    }
  });

  it('approving the waiting plan from the page asks for the admin token once, calls control.approvePlan, and the plan leaves the list', async () => {
    const { page, errors } = await open(1280, 800);
    const plan = seed.pendingPlan;
    const card = page.locator(`article[data-plan="${plan.id}"]`);
    await card.waitFor({ timeout: WAIT_MS });
    assert.match(await card.textContent() ?? '', /desk2.*us-east-1 → eu-west-1/);
    await shot(page, 'plan-waiting');

    const pendingBefore = Number(await page.locator('#plan-count').textContent());
    await card.locator('button.approve').click();
    await page.waitForSelector('#token-form:not([hidden])', { timeout: WAIT_MS });
    assert.equal(control.calls.length, 0, 'nothing is sent before the token is given');
    await page.fill('#token-input', ADMIN_TOKEN);
    await page.click('#token-form button[type=submit]');
    await card.waitFor({ state: 'detached', timeout: WAIT_MS });

    const call = control.calls.find((c) => c.method === 'approvePlan');
    assert.deepEqual(call?.args, [plan.id, 'api:admin']);
    assert.equal(Number(await page.locator('#plan-count').textContent()), pendingBefore - 1);
    assert.equal(await page.evaluate(() => localStorage.getItem('vmshadow.token')), ADMIN_TOKEN);

    // A plan the manager recommends next arrives over the stream; rejecting it (with a reason) needs no new token.
    await waitForListeners(1);
    const next: PlanRecord = {
      ...plan, id: 'plan-0003', roundId: 'round-0003', atMs: Date.now(), status: 'recommended',
      moves: plan.moves.map((m) => ({ ...m, vm: vmId('desk2') })),
    };
    await store.put('plans', next.id, next, { status: next.status, group: next.roundId });
    events.publish({ type: 'plan', plan: next });
    const card3 = page.locator(`article[data-plan="${next.id}"]`);
    await card3.waitFor({ timeout: WAIT_MS });
    await card3.locator('input.reason').fill('bob is travelling this week');
    await card3.locator('button.reject').click();
    await card3.waitFor({ state: 'detached', timeout: WAIT_MS });
    assert.deepEqual(control.calls.find((c) => c.method === 'rejectPlan')?.args, [next.id, 'api:admin', 'bob is travelling this week']);
    assert.equal(await page.locator('#token-form').isHidden(), true);
    await shot(page, 'plan-decided');
    assert.deepEqual(errors, []);
  });

  it('made no request off its own origin in any of the above', () => {
    assert.deepEqual(offOrigin, []);
  });
});
