// The web console in a real browser: Debian's chromium driven by playwright-core (installed by
// .ci/browser-env.sh; Playwright's own browsers are never downloaded).
//
// Env:
//   PLAYWRIGHT_DIR      directory holding node_modules/playwright-core (last line of .ci/browser-env.sh)
//   EXOGATE_URL         the gateway's HTTP base, e.g. http://127.0.0.1:18080
//   EXOGATE_API_KEY     its API key
//   EXOGATE_BIN         the exogate binary (for `exogate sim call`)
//   EXOGATE_DYNAMIC_URL the voicebot dynamic URL the simulated call asks, e.g. http://127.0.0.1:18080/voicebot?agentId=echo
//   SCREENSHOT_DIR      where <page>.png go (default: a new temp directory)
//   CAMPAIGN_AGENT      the campaign's agent (default echo)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Steps: sign in (a wrong key is refused), a simulated call on the live page, the call log and the call's
// detail (timeline, recording with Range seeks and playback, waveform), an agent and a phone, a campaign
// from a CSV with a bad line run to 100%, sign out. Any console error or page error fails the run
// (except the 401s of the sign-in itself). Prints BROWSER OK on success; exits 1 with a message otherwise.

import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const started = Date.now();
const env = (name, fallback) => {
  const v = process.env[name];
  if (v) return v;
  if (fallback !== undefined) return fallback;
  console.error(`console.mjs: ${name} is not set`);
  process.exit(2);
};

const PLAYWRIGHT_DIR = env('PLAYWRIGHT_DIR');
const BASE = env('EXOGATE_URL').replace(/\/+$/, '');
const API_KEY = env('EXOGATE_API_KEY');
const BIN = env('EXOGATE_BIN');
const DYNAMIC_URL = env('EXOGATE_DYNAMIC_URL');
const SHOTS = env('SCREENSHOT_DIR', '') || fs.mkdtempSync(path.join(os.tmpdir(), 'exogate-console-shots-'));
const CAMPAIGN_AGENT = env('CAMPAIGN_AGENT', 'echo');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

const require = createRequire(import.meta.url);
const PLAYWRIGHT = path.join(PLAYWRIGHT_DIR, 'node_modules', 'playwright-core');
if (!fs.existsSync(PLAYWRIGHT)) {
  console.error(`console.mjs: no ${PLAYWRIGHT}: run .ci/browser-env.sh and set PLAYWRIGHT_DIR to its last line`);
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`console.mjs: no browser at ${CHROMIUM}: run .ci/browser-env.sh (it installs Debian's chromium)`);
  process.exit(2);
}
const { chromium } = require(PLAYWRIGHT);

fs.mkdirSync(SHOTS, { recursive: true });
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

// A caller number and CallSid of our own, so this run's call is told apart from any other.
const suffix = String(Date.now() % 1_000_000).padStart(6, '0');
const CALLER = `+9199990${suffix.slice(0, 5)}`;
const CALL_SID = `console-test-${suffix}`;

// ---------------------------------------------------------------------------------------------

let page = null;
let context = null;
let userDataDir = null;
const tempDirs = [];
let sim = null;
let phase = 'start';
const consoleProblems = [];
// HTTP errors a step provokes on purpose (Chromium logs each as a failed resource load): used once each.
let expectedHttp = [];
const expectHttp = (status, pathEnd) => expectedHttp.push({ status, pathEnd });
const timings = [];

function log(message) {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${t}s] ${message}`);
}

class Failure extends Error {}
const fail = (message) => {
  throw new Failure(message);
};
const check = (cond, message) => {
  if (!cond) fail(message);
};

async function step(name, fn) {
  phase = name;
  const t0 = Date.now();
  log(`step: ${name}`);
  await fn();
  timings.push([name, Date.now() - t0]);
}

async function shot(name, viewport) {
  if (viewport) await page.setViewportSize(viewport);
  await page.waitForTimeout(150); // layout and a repaint after a resize
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (viewport) await page.setViewportSize(DESKTOP);
  log(`screenshot ${file}`);
}

/** Waits for fn() (in the page) to be truthy; fails with `what` after timeout ms. */
async function waitFor(what, fn, arg, timeout = 10_000) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    fail(`timed out after ${timeout} ms waiting for ${what}`);
  }
  return null;
}

async function visible(selector, what, timeout = 10_000) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout });
  } catch {
    fail(`timed out after ${timeout} ms waiting for ${what} (${selector})`);
  }
}

async function hashTo(hash) {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
}

async function navTo(label, hash) {
  // Through the sidebar, as a user does.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
  await page.waitForFunction((h) => location.hash === h, hash, { timeout: 5000 });
}

function startSim({ from = CALLER, callSid = CALL_SID, durationMs = 6000 } = {}) {
  const args = ['sim', 'call', '--dynamic', DYNAMIC_URL, '--tone', '440', '--duration-ms', String(durationMs),
    '--from', from, '--call-sid', callSid];
  log(`spawn ${BIN} ${args.join(' ')}`);
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => out.push(d));
  const exited = new Promise((resolve) => {
    child.on('error', (e) => resolve({ code: -1, output: `spawn failed: ${e.message}` }));
    child.on('close', (code, signal) => resolve({ code, signal, output: Buffer.concat(out).toString() }));
  });
  return { child, exited };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'exogate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
    viewport: DESKTOP,
    acceptDownloads: false,
  });
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10_000);

  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'assert') return;
    const text = msg.text();
    const url = (msg.location() && msg.location().url) || '';
    // Chromium logs every 401 as a failed resource load: expected only for the sign-in's own
    // requests (the first GET /api/session, the wrong key's POST).
    const signIn401 = phase === 'sign in' && /status of 401/.test(text) && url.endsWith('/api/session');
    const expected = expectedHttp.findIndex((x) => text.startsWith('Failed to load resource')
      && text.includes(`status of ${x.status} `) && url.endsWith(x.pathEnd));
    if (expected >= 0) expectedHttp.splice(expected, 1);
    else if (!signIn401) consoleProblems.push(`[${phase}] console.${msg.type()}: ${text}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (e) => consoleProblems.push(`[${phase}] page error: ${e.message}`));
  page.on('crash', () => consoleProblems.push(`[${phase}] the page crashed`));

  // a. sign in ---------------------------------------------------------------------------------
  await step('sign in', async () => {
    const res = await page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    check(res && res.ok(), `GET / answered ${res && res.status()}`);
    const csp = (await res.headerValue('content-security-policy')) || '';
    check(csp.includes("script-src 'self'"), `GET / has no strict CSP header (got ${JSON.stringify(csp)})`);
    await visible('#signin-form', 'the sign-in form');
    await shot('signin');
    await page.getByLabel('API key').fill(`${API_KEY}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible('#signin-error', 'the error for a wrong key');
    const error = (await page.locator('#signin-error').textContent()).trim();
    check(error.length > 0, 'a wrong key shows an empty error');
    check(await page.locator('#shell').isHidden(), 'a wrong key opened the console');
    log(`wrong key: "${error}"`);
    await shot('signin-error');
    await page.getByLabel('API key').fill(API_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible('#live-calls', 'the live page after signing in');
    check(await page.locator('#signin').isHidden(), 'the sign-in form is still shown after signing in');
    const cookies = await context.cookies(BASE);
    check(cookies.length > 0, 'signing in set no cookie');
    check(cookies.every((c) => c.httpOnly), `a session cookie is not HttpOnly: ${cookies.map((c) => c.name).join(', ')}`);
  });

  // b. a live call ------------------------------------------------------------------------------
  let callId = null;
  await step('live call', async () => {
    await page.waitForFunction(() => location.hash === '#/live');
    sim = startSim();
    const simStart = Date.now();
    const row = `#live-calls tbody tr[data-call-id]`;
    let appeared = null;
    try {
      appeared = await Promise.race([
        page.waitForFunction((caller) => [...document.querySelectorAll('#live-calls tbody tr[data-call-id]')]
          .find((tr) => tr.textContent.includes(caller))?.dataset.callId, CALLER, { timeout: 5000, polling: 100 }),
        sim.exited.then((r) => ({ exitedEarly: r })),
      ]);
    } catch {
      fail(`no row for the call from ${CALLER} on the live page within 5 s of starting the simulator`);
    }
    if (appeared && appeared.exitedEarly) {
      fail(`the simulator exited before its call was shown (code ${appeared.exitedEarly.code}):\n${appeared.exitedEarly.output}`);
    }
    callId = await appeared.jsonValue();
    log(`live row for ${CALLER} (data-call-id ${callId}) after ${Date.now() - simStart} ms`);
    const tr = page.locator(`${row}[data-call-id="${callId}"]`);
    check(await tr.getByRole('button', { name: /Hang up/ }).count() === 1, 'the live row has no Hang up button');
    check(await tr.getByRole('button', { name: /Transfer/ }).count() === 1, 'the live row has no Transfer button');
    check(await tr.locator('[role="meter"]').count() === 2, 'the live row has no caller and bot level meters');
    const d1 = (await tr.locator('.duration').textContent()).trim();
    await page.waitForTimeout(1300);
    const d2 = (await tr.locator('.duration').textContent()).trim();
    check(d1 !== d2, `the duration does not tick (${d1} then ${d2})`);
    const level = Number(await tr.locator('.meter-caller').getAttribute('aria-valuenow'));
    check(level > 0, 'the caller\'s level meter stays at 0 during a 440 Hz tone');
    log(`duration ${d1} → ${d2}, caller level meter ${level}%`);
    await shot('live');
    await shot('live-phone', PHONE);

    const result = await Promise.race([
      sim.exited,
      new Promise((resolve) => setTimeout(() => resolve(null), 40_000)),
    ]);
    if (!result) fail('the simulated call did not end within 40 s');
    if (result.code !== 0) fail(`exogate sim call exited with ${result.code}:\n${result.output}`);
    log(`simulator done: ${result.output.trim().split('\n').slice(0, 3).join(' | ')}`);
    const exitAt = Date.now();
    try {
      await page.waitForFunction((id) => !document.querySelector(`#live-calls tr[data-call-id="${CSS.escape(id)}"]`),
        callId, { timeout: 10_000, polling: 100 });
    } catch {
      fail('the call\'s live row was still there 10 s after the simulator exited');
    }
    log(`live row gone ${Date.now() - exitAt} ms after the simulator exited`);
  });

  // An operator hangs up a live call: the confirmation dialog, the CSRF-protected POST, the row goes.
  await step('hang up', async () => {
    const caller = `+9199991${suffix.slice(0, 5)}`;
    const other = startSim({ from: caller, callSid: `${CALL_SID}-hangup`, durationMs: 30_000 });
    sim = other;
    const row = page.locator('#live-calls tbody tr[data-call-id]', { hasText: caller });
    try {
      await row.first().waitFor({ timeout: 5000 });
    } catch {
      fail(`no row for the second call (${caller}) within 5 s`);
    }
    await row.first().getByRole('button', { name: /Hang up/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor({ timeout: 3000 }).catch(() => fail('Hang up opened no confirmation dialog'));
    await shot('live-hangup');
    await dialog.getByRole('button', { name: 'Hang up' }).click();
    const t0 = Date.now();
    await row.first().waitFor({ state: 'detached', timeout: 5000 })
      .catch(() => fail('the hung-up call\'s row was still there after 5 s'));
    const result = await Promise.race([other.exited, new Promise((r) => setTimeout(() => r(null), 10_000))]);
    check(result, 'the simulator did not end within 10 s of the hang-up');
    log(`hung up: row gone after ${Date.now() - t0} ms, simulator exited with ${result.code}`);
  });

  // c. call log and detail ------------------------------------------------------------------------
  await step('call log', async () => {
    await navTo('Call log', '#/calls');
    await visible('#call-log', 'the call log');
    const rowSel = '#call-log tbody tr[data-call-id]';
    try {
      await page.locator(rowSel, { hasText: CALLER }).first().waitFor({ timeout: 10_000 });
    } catch {
      fail(`the call from ${CALLER} is not in the call log`);
    }
    const logId = await page.locator(rowSel, { hasText: CALLER }).first().getAttribute('data-call-id');
    if (logId !== callId) log(`note: the live page's id ${callId} differs from the call log's ${logId}`);
    const range = (await page.locator('.panel-foot span').first().textContent()).trim();
    check(/\d+–\d+ of \d+/.test(range), `no "x–y of total" paging text (got "${range}")`);
    await shot('calls');
    await page.locator(rowSel, { hasText: CALLER }).first().locator('td').first().getByRole('link').click();
    await page.waitForFunction(() => location.hash.startsWith('#/calls/'));
  });

  await step('call detail', async () => {
    await visible('#timeline', 'the call timeline');
    const kinds = await page.locator('#timeline tbody tr[data-kind]').evaluateAll((trs) => trs.map((t) => t.dataset.kind));
    check(kinds.includes('start'), `the timeline has no start entry (kinds: ${kinds.join(', ')})`);
    log(`timeline: ${kinds.join(', ')}`);
    await visible('audio#recording', 'the recording\'s audio element', 15_000);

    // The waveform: drawn from the WAV the page fetched and parsed itself.
    await waitFor('the waveform to be drawn', () => {
      const c = document.getElementById('waveform');
      return c && c.dataset.state !== 'loading' && c.dataset.state;
    }, undefined, 15_000);
    const state = await page.locator('#waveform').getAttribute('data-state');
    check(state === 'ready', `the waveform could not be drawn: ${await page.locator('#waveform').locator('xpath=../..').textContent()}`);
    const pixels = await page.evaluate(() => {
      const c = document.getElementById('waveform');
      const g = c.getContext('2d');
      const { data, width, height } = g.getImageData(0, 0, c.width, c.height);
      // Columns holding the caller's blue in the top half, the bot's orange in the bottom half.
      const cols = { caller: 0, bot: 0 };
      for (let x = 0; x < width; x++) {
        let top = false;
        let bottom = false;
        for (let y = 0; y < height; y++) {
          const i = (y * width + x) * 4;
          const [r, gr, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
          if (a < 128) continue;
          if (y < height / 2 && b > r + 60 && b > gr) top = true;
          if (y >= height / 2 && r > b + 60 && r > gr) bottom = true;
        }
        if (top) cols.caller++;
        if (bottom) cols.bot++;
      }
      return { ...cols, width };
    });
    log(`waveform: ${pixels.caller}/${pixels.width} caller columns, ${pixels.bot}/${pixels.width} bot columns`);
    check(pixels.caller > pixels.width * 0.2, `the waveform's caller half is (nearly) blank: ${JSON.stringify(pixels)}`);
    check(pixels.bot > pixels.width * 0.1, `the waveform's bot half is (nearly) blank: ${JSON.stringify(pixels)}`);

    // The player: metadata through the recording URL itself (the session cookie authenticates it).
    const meta = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('recording');
      const done = () => resolve({ duration: a.duration, error: a.error && (a.error.message || a.error.code) });
      if (a.readyState >= 1) done();
      a.addEventListener('loadedmetadata', done, { once: true });
      a.addEventListener('error', done, { once: true });
      setTimeout(done, 10_000);
    }));
    check(!meta.error, `the recording failed to load: ${meta.error}`);
    check(Number.isFinite(meta.duration) && meta.duration > 4, `the recording lasts ${meta.duration} s (> 4 s expected)`);
    log(`recording: ${meta.duration.toFixed(2)} s`);

    // Seeking needs Range requests: the element can only seek within what the server lets it.
    const seekable = await page.evaluate(() => {
      const a = document.getElementById('recording');
      return a.seekable.length ? a.seekable.end(a.seekable.length - 1) : 0;
    });
    check(seekable > 4, `the recording is not seekable (seekable to ${seekable} s): does the server answer Range requests?`);
    const box = await page.locator('#waveform').boundingBox();
    await page.mouse.click(box.x + box.width * 0.75, box.y + box.height / 2);
    const clicked = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('recording');
      if (!a.seeking) resolve(a.currentTime);
      a.addEventListener('seeked', () => resolve(a.currentTime), { once: true });
      setTimeout(() => resolve(a.currentTime), 5000);
    }));
    check(Math.abs(clicked - meta.duration * 0.75) < 0.5,
      `clicking the waveform at 75% seeked to ${clicked.toFixed(2)} s of ${meta.duration.toFixed(2)} s`);
    const seeked = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('recording');
      a.addEventListener('seeked', () => resolve(a.currentTime), { once: true });
      a.currentTime = 2;
      setTimeout(() => resolve(a.currentTime), 5000);
    }));
    check(Math.abs(seeked - 2) < 0.1, `setting currentTime to 2 s left it at ${seeked}`);
    const played = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('recording');
      const from = a.currentTime;
      a.play().catch((e) => resolve({ error: String(e) }));
      const t0 = performance.now();
      const poll = () => {
        if (a.currentTime > from + 0.3) resolve({ from, to: a.currentTime, ms: performance.now() - t0 });
        else if (performance.now() - t0 > 6000) resolve({ from, to: a.currentTime, stuck: true });
        else setTimeout(poll, 50);
      };
      poll();
    }));
    check(!played.error && !played.stuck, `the recording does not play: ${JSON.stringify(played)}`);
    log(`playback advanced ${played.from.toFixed(2)} → ${played.to.toFixed(2)} s in ${Math.round(played.ms)} ms`);
    await page.waitForTimeout(300); // the playhead moves with it
    await page.evaluate(() => document.getElementById('recording').pause());
    await shot('call');
    await shot('call-phone', PHONE);
  });

  // d. an agent and a phone -----------------------------------------------------------------------
  await step('agents', async () => {
    await navTo('Agents', '#/agents');
    await visible('#agents', 'the agents table');
    await page.getByRole('button', { name: 'New agent' }).click();
    const form = page.locator('#agent-form');
    await form.getByLabel('Id').fill('console-echo');
    await form.getByLabel('Kind').selectOption('echo');
    await form.getByLabel('Settings (JSON)').fill('{"on_failure": "hangup"}');
    // A mistake first: settings that are not JSON are refused in the form.
    await form.getByLabel('Settings (JSON)').fill('{"on_failure": ');
    await form.getByRole('button', { name: 'Create agent' }).click();
    await visible('#agent-form [role="alert"]', 'the error for settings that are not JSON');
    await form.getByLabel('Settings (JSON)').fill('{"on_failure": "hangup"}');
    await form.getByRole('button', { name: 'Create agent' }).click();
    await visible('#agents tr[data-agent-id="console-echo"]', 'the new agent in the list');
    await page.locator('#agent-form').waitFor({ state: 'detached', timeout: 3000 })
      .catch(() => fail('the agent form stayed open after saving'));
    // A second create with the same id: the API's 409 is shown in the form.
    await page.getByRole('button', { name: 'New agent' }).click();
    await page.locator('#agent-form').getByLabel('Id').fill('console-echo');
    expectHttp(409, '/api/agents');
    await page.locator('#agent-form').getByRole('button', { name: 'Create agent' }).click();
    await visible('#agent-form [role="alert"]', 'the API error for a duplicate agent');
    const dup = (await page.locator('#agent-form [role="alert"]').textContent()).trim();
    check(/exists/i.test(dup), `a duplicate agent shows "${dup}"`);
    await page.locator('#agent-form').getByRole('button', { name: 'Cancel' }).click();
    await shot('agents');
  });

  await step('phones', async () => {
    const token = `tok-${suffix}-secret`;
    await navTo('Phones', '#/phones');
    await visible('#phones', 'the phones table');
    await page.getByRole('button', { name: 'New phone' }).click();
    const form = page.locator('#phone-form');
    await form.getByLabel('Number').fill('+918000000001');
    await form.getByLabel('Account SID').fill('console-account');
    await form.getByLabel('API key', { exact: true }).fill('console-key');
    await form.getByLabel('API token').fill(token);
    await form.getByLabel('Default agent').selectOption('console-echo');
    await form.getByRole('button', { name: 'Create phone' }).click();
    const row = page.locator('#phones tbody tr[data-phone-id]', { hasText: '+918000000001' });
    try {
      await row.first().waitFor({ timeout: 10_000 });
    } catch {
      const err = await page.locator('#phone-form [role="alert"]').textContent().catch(() => '');
      fail(`the new phone is not in the list${err ? `: ${err}` : ''}`);
    }
    const shown = (await row.first().locator('td.token').textContent()).trim();
    check(/^\*{4,}$/.test(shown), `the token column shows "${shown}", not a mask`);
    check(!(await page.content()).includes(token), 'the phone\'s token appears in the page');
    // Editing keeps the token when the field is left empty.
    await row.first().getByRole('button', { name: /Edit/ }).click();
    const edit = page.locator('#phone-form');
    check((await edit.getByLabel('API token').inputValue()) === '', 'the edit form shows a token');
    await edit.getByLabel('Max concurrent calls').fill('3');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await page.locator('#phone-form').waitFor({ state: 'detached' });
    const maxCell = page.locator('#phones tbody tr[data-phone-id]', { hasText: '+918000000001' }).locator('td.num');
    await page.waitForFunction(() => [...document.querySelectorAll('#phones tbody td.num')].some((td) => td.textContent.trim() === '3'),
      undefined, { timeout: 5000 }).catch(async () => fail(`the edited phone shows max concurrent "${(await maxCell.textContent()).trim()}"`));
    await shot('phones');
  });

  // e. a campaign -----------------------------------------------------------------------------------
  let campaignId = null;
  await step('campaign upload', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'exogate-console-csv-'));
    tempDirs.push(dir);
    const csv = path.join(dir, 'contacts.csv');
    const n = suffix.slice(0, 4);
    // Line 4 is not a phone number.
    fs.writeFileSync(csv, `phone,name\n+91980${n}001,Asha\n+91980${n}002,Ravi\nnot-a-number,Bad\n+91980${n}003,Meera\n`);
    await navTo('Campaigns', '#/campaigns');
    await visible('#campaigns', 'the campaigns table');
    await page.getByRole('button', { name: 'New campaign' }).click();
    const form = page.locator('#campaign-form');
    await form.getByLabel('Name').waitFor();
    await form.getByLabel('Name').fill(`Console test ${suffix}`);
    await form.getByLabel('Agent').selectOption(CAMPAIGN_AGENT);
    await form.getByLabel('Max concurrent calls').fill('3');
    await form.getByLabel('Calls per minute').fill('600');
    await form.locator('summary').click();
    // Open all day, every day, whenever the test runs.
    await form.getByLabel('Window opens').fill('00:00');
    await form.getByLabel('Window closes').fill('23:59');
    await form.getByLabel('Time zone').fill('UTC');
    await form.getByLabel('Contacts (CSV file)').setInputFiles(csv);
    expectHttp(400, '/api/campaigns'); // only if the server refuses the whole file
    await form.getByRole('button', { name: 'Create campaign' }).click();
    // The server skips bad lines (201 with `rejected`) or refuses the file (400 with `errors`):
    // either way line 4 and its reason are listed.
    const created = page.locator('#campaign-created');
    const refused = page.locator('#campaign-form [role="alert"]:not([hidden])');
    try {
      await page.locator('#campaign-created, #campaign-form [role="alert"]:not([hidden])').first().waitFor({ timeout: 10_000 });
    } catch {
      fail('creating the campaign showed neither a result nor an error');
    }
    const refusedWhole = await refused.isVisible();
    await page.waitForTimeout(100);
    expectedHttp = [];
    const box = refusedWhole ? refused : created;
    const item = box.locator('li[data-line="4"]');
    check(await item.count() === 1, `line 4 is not listed: "${(await box.textContent()).trim()}"`);
    const text = (await item.textContent()).trim();
    check(/^Line 4: .{3,}/.test(text), `line 4's entry has no reason: "${text}"`);
    log(`bad line shown: "${text}"${refusedWhole ? ' (whole file refused)' : ' (good lines imported)'}`);
    await shot('campaign-upload');
    if (refusedWhole) {
      fs.writeFileSync(csv, `phone,name\n+91980${n}001,Asha\n+91980${n}002,Ravi\n+91980${n}003,Meera\n`);
      await form.getByLabel('Contacts (CSV file)').setInputFiles(csv);
      await form.getByRole('button', { name: 'Create campaign' }).click();
      await page.waitForFunction(() => location.hash.startsWith('#/campaigns/'), undefined, { timeout: 10_000 });
    } else {
      check(/3 contacts/.test(await created.textContent()), `the result does not say 3 contacts: "${(await created.textContent()).trim()}"`);
      await created.getByRole('link', { name: 'Open campaign' }).click();
      await page.waitForFunction(() => location.hash.startsWith('#/campaigns/'));
    }
    campaignId = decodeURIComponent((await page.evaluate(() => location.hash)).slice('#/campaigns/'.length));
    log(`campaign ${campaignId}`);
  });

  await step('campaign run', async () => {
    await visible('#campaign-progress', 'the campaign\'s progress bar');
    await visible('button[data-action="start"]', 'the Start button');
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    try {
      await page.locator('button[data-action="pause"]').waitFor({ state: 'visible', timeout: 5000 });
    } catch {
      const err = await page.locator('[role="alert"]').allTextContents();
      fail(`the campaign did not start: ${err.join(' ').trim() || 'no error shown'}`);
    }
    const t0 = Date.now();
    try {
      await page.waitForFunction(() => /\b100%/.test(document.getElementById('campaign-progress')?.textContent || ''),
        undefined, { timeout: 60_000, polling: 250 });
    } catch {
      const p = await page.locator('#campaign-progress').textContent().catch(() => '?');
      const counts = await page.locator('#campaign-counts').textContent().catch(() => '?');
      fail(`the campaign did not reach 100% within 60 s (shows "${p}", ${counts})`);
    }
    log(`campaign at 100% after ${Date.now() - t0} ms: ${(await page.locator('#campaign-progress').textContent()).trim()}`);
    await page.waitForFunction(() => document.getElementById('campaign-status')?.textContent.trim() === 'completed',
      undefined, { timeout: 10_000 }).catch(() => fail('the campaign\'s status badge never said completed'));
    const completed = Number((await page.locator('#campaign-counts .tile[data-state="completed"] .n').textContent()).replace(/\D/g, ''));
    log(`contacts completed: ${completed}`);
    const href = await page.locator('#campaign-results').getAttribute('href');
    check(href === `/api/campaigns/${encodeURIComponent(campaignId)}/results.csv`, `the results link is ${href}`);
    // The link works with the session cookie alone (the page's context shares it).
    const res = await context.request.get(`${BASE}${href}`);
    check(res.ok(), `downloading the results answered ${res.status()}`);
    const lines = (await res.text()).trim().split('\n');
    check(lines.length === 4, `the results have ${lines.length} lines (header + 3 expected)`);
    await shot('campaign');
    await navTo('Campaigns', '#/campaigns');
    await visible(`#campaigns tr[data-campaign-id="${campaignId}"]`, 'the campaign in the list');
    await shot('campaigns');
  });

  // f. sign out -----------------------------------------------------------------------------------
  await step('sign out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible('#signin-form', 'the sign-in form after signing out');
    const res = await context.request.get(`${BASE}/api/live`);
    check(res.status() === 401, `GET /api/live after signing out answered ${res.status()}`);
  });

  // Polls still in flight report late.
  await page.waitForTimeout(300);
  if (consoleProblems.length) fail(`the page logged errors:\n  ${consoleProblems.join('\n  ')}`);
}

async function cleanup() {
  if (sim && sim.child.exitCode === null) sim.child.kill('SIGKILL');
  if (context) await context.close().catch(() => {});
  for (const dir of [userDataDir, ...tempDirs]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

const watchdog = setTimeout(() => {
  console.error(`console.mjs: FAILED: the run took over 240 s (in step "${phase}")`);
  cleanup().finally(() => process.exit(1));
}, 240_000);

try {
  await main();
  clearTimeout(watchdog);
  await cleanup();
  log(`steps: ${timings.map(([n, ms]) => `${n} ${(ms / 1000).toFixed(1)}s`).join(', ')}`);
  log(`screenshots in ${SHOTS}`);
  console.log('BROWSER OK');
  process.exit(0);
} catch (e) {
  clearTimeout(watchdog);
  const message = e instanceof Failure ? e.message : (e && e.stack) || String(e);
  console.error(`console.mjs: FAILED in step "${phase}": ${message}`);
  if (consoleProblems.length) console.error(`page errors so far:\n  ${consoleProblems.join('\n  ')}`);
  if (page) {
    const file = path.join(SHOTS, 'failure.png');
    await page.screenshot({ path: file }).then(() => console.error(`screenshot of the failure: ${file}`)).catch(() => {});
  }
  await cleanup();
  process.exit(1);
}
