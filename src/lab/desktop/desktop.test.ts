// A real desktop (TigerVNC Xvnc, xterm, the Xlib video player) and the measuring RFB viewer, both in
// the desktop's own namespace, over loopback.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AppError } from '../../core/errors.js';
import { cleanupRun, isProcessAlive, isRoot, listNamespaces, NetnsRun } from '../netns.js';
import { attachDesktop, startDesktop, type Desktop } from './desktop.js';
import { missingDesktopTools } from './tools.js';
import { formatSummary, type UpdateSummary } from './update-stats.js';
import { startViewer, type Viewer } from './viewer.js';

const skip = !isRoot() ? 'needs root (network namespaces)' : (missingDesktopTools() ?? false);
const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a real desktop (Xvnc) and the RFB viewer on loopback in the desktop namespace', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-desk-'));
  let run: NetnsRun;
  let d: Desktop;
  let v: Viewer;
  let text: UpdateSummary;

  before(async () => {
    run = NetnsRun.create({ stateDir });
    d = await startDesktop({ run, name: 'loop', typingCharsPerS: 4 });
    v = await startViewer((argv, o) => run.spawnIn(d.ns, argv, o), { host: '127.0.0.1', port: d.rfbPort, probe: d.probe });
  });
  after(async () => {
    await v?.close();
    await d?.stop().catch(() => undefined);
    await run?.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('the viewer sees the whole 800×600 desktop over RFB 3.8', () => {
    assert.equal(v.width, 800);
    assert.equal(v.height, 600);
    assert.equal(v.desktopName, 'vmshadow-loop');
  });

  it('idle: nothing on the screen changes, so at most one stray update in 2 s', async (t: TestContext) => {
    assert.equal(d.activity.activity, 'idle');
    await settle(300);
    const s = await v.measure(2000);
    t.diagnostic(`idle: ${formatSummary(s)}`);
    assert.ok(s.updates <= 1, `${s.updates} updates`);
  });

  it('text-editing: a few small updates a second (a typed character each)', async (t: TestContext) => {
    await d.setActivity('text-editing');
    await settle(500);
    text = await v.measure(3000);
    t.diagnostic(`text-editing: ${formatSummary(text)}`);
    assert.ok(text.updatesPerS >= 1 && text.updatesPerS <= 20, `${text.updatesPerS} updates/s`);
    assert.ok(text.bytesPerS < 50_000, `${text.bytesPerS} B/s`);
    // The update time is mostly the wait for the next keystroke.
    assert.ok(text.updateMs !== null && text.updateMs.p50 >= 50, `p50 ${text.updateMs?.p50}`);
  });

  it('video: many more updates/s and bytes/s than text-editing, carrying frames only a few ms old', async (t: TestContext) => {
    await d.setActivity('video');
    await settle(500);
    const video = await v.measure(3000);
    t.diagnostic(`video: ${formatSummary(video)}`);
    assert.ok(video.updatesPerS >= 15, `${video.updatesPerS} updates/s (video at 25 frames/s)`);
    assert.ok(video.updatesPerS >= 2 * text.updatesPerS, `video ${video.updatesPerS} vs text ${text.updatesPerS} updates/s`);
    assert.ok(video.bytesPerS >= 100 * text.bytesPerS, `video ${video.bytesPerS} vs text ${text.bytesPerS} B/s`);
    // Each update carries the 320×240 video in 32-bit pixels (the window's edges cut updates: ±10 %).
    assert.ok(video.bytesPerS / video.updatesPerS >= 0.9 * 320 * 240 * 4, `${video.bytesPerS / video.updatesPerS} B per update`);
    assert.ok(video.frameAgeMs !== null && video.frameAgeMs.p50 < 100, `frame age p50 ${video.frameAgeMs?.p50}`);
  });

  it('the activity switch reports the current activity, the characters typed and the frames drawn', async () => {
    const s = await d.activityStatus();
    assert.equal(s.activity, 'video');
    assert.equal(s.switches, 2);
    assert.ok(s.charsTyped >= 4, `${s.charsTyped} characters`);
    assert.ok(s.framesDrawn >= 30, `${s.framesDrawn} frames`);
    await d.setActivity('idle');
    assert.equal(d.info().activity, 'idle');
    await assert.rejects(d.setActivity('gaming' as never), (e: unknown) => e instanceof AppError && /must be one of idle, text-editing, video/.test(e.message));
  });

  it('stop() ends Xvnc, the editor and the video by pid and removes the namespace and the X lock files', async () => {
    const s = await d.activityStatus();
    const pids = [d.xvncPid, s.editorPid, s.videoPid];
    const display = d.display.slice(1);
    await v.close();
    await d.stop();
    for (const pid of pids) assert.ok(!isProcessAlive(pid, null), `pid ${pid} still alive`);
    assert.ok(!(await listNamespaces()).includes(d.ns));
    assert.ok(!existsSync(`/tmp/.X${display}-lock`));
    assert.ok(!existsSync(`/tmp/.X11-unix/X${display}`));
  });
});

describe('a desktop started in a given namespace (a site namespace)', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-desk-'));
  let run: NetnsRun;
  after(async () => {
    await run?.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('serves RFB there, cannot be attached elsewhere, and stop() leaves the namespace in place', async () => {
    run = NetnsRun.create({ stateDir });
    const siteNs = await run.addNamespace('site');
    const d = await startDesktop({ run, name: 'insite', ns: siteNs, width: 640, height: 400 });
    try {
      assert.equal(d.ns, siteNs);
      const v = await startViewer((argv, o) => run.spawnIn(siteNs, argv, o), { host: '127.0.0.1', port: d.rfbPort });
      assert.deepEqual([v.width, v.height], [640, 400]);
      await v.close();
      await assert.rejects(attachDesktop(d, siteNs), (e: unknown) => e instanceof AppError && e.code === 'DESKTOP_SHARED_NS');
    } finally {
      await d.stop();
    }
    assert.ok(!isProcessAlive(d.xvncPid, null));
    assert.ok((await listNamespaces()).includes(siteNs));
  });
});

describe('leftovers of a desktop whose owner was killed -9', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-desk-'));
  after(() => rmSync(stateDir, { recursive: true, force: true }));

  it('cleanupRun() stops Xvnc and the desktop processes, deletes the namespace and removes the X lock files', async () => {
    const here = path.dirname(new URL(import.meta.url).pathname);
    const script = `
      import { NetnsRun } from ${JSON.stringify(pathToFileURL(path.join(here, '..', 'netns.js')).href)};
      import { startDesktop } from ${JSON.stringify(pathToFileURL(path.join(here, 'desktop.js')).href)};
      const run = NetnsRun.create({ stateDir: ${JSON.stringify(stateDir)} });
      const d = await startDesktop({ run, name: 'orphan', initialActivity: 'video' });
      const s = await d.activityStatus();
      process.stdout.write(JSON.stringify({ runId: run.runId, display: d.display, pids: [d.xvncPid, s.editorPid, s.videoPid], ns: d.ns }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let info: { runId: string; display: string; pids: number[]; ns: string } | null = null;
    try {
      const got = await new Promise<{ runId: string; display: string; pids: number[]; ns: string }>((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no desktop within 30 s: ${err}`)), 30_000);
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) {
            clearTimeout(timer);
            resolve(JSON.parse(out) as { runId: string; display: string; pids: number[]; ns: string });
          }
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
        child.once('exit', (code) => reject(new Error(`child exited ${String(code)}: ${err}`)));
      });
      info = got;
      child.kill('SIGKILL');
      await new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
      const n = got.display.slice(1);
      assert.ok(isProcessAlive(got.pids[0]!, null), 'Xvnc outlives its killed owner');
      assert.ok(existsSync(`/tmp/.X${n}-lock`));
      const report = await cleanupRun(got.runId, { stateDir });
      assert.deepEqual(report.errors, []);
      for (const pid of got.pids) assert.ok(!isProcessAlive(pid, null), `pid ${pid} still alive`);
      assert.ok(!(await listNamespaces()).includes(got.ns));
      assert.ok(!existsSync(`/tmp/.X${n}-lock`) && !existsSync(`/tmp/.X11-unix/X${n}`));
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (info !== null) await cleanupRun(info.runId, { stateDir });
    }
  });
});
