// A real headless-Chromium walk through approving a device-grant code on a phone: open the
// verification_uri_complete link, get sent to /login, sign in, come back to /device with the
// code filled in (and nothing approved yet), continue to "Is this device in front of you?",
// check the facts and the Approve/Deny buttons, name the device and approve it.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… VERIFICATION_URI_COMPLETE=… USER_CODE=BCDF-GHJK \
//     [DEVICE_NAME="Browser-approved TV"] [HANDSHAKE=1] [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM=/usr/bin/chromium] node e2e/device.mjs
//
// With HANDSHAKE=1 the script prints `FORM_SHOWN` once the code form is on screen and waits for
// a line on stdin before it goes on, so that the caller can check that merely opening the link
// approved nothing. Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import path from 'node:path';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`env var ${name} is not set`);
  return v;
};

class CheckFailed extends Error {}

const check = (ok, why) => {
  if (!ok) throw new CheckFailed(why);
};

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const PHONE = { width: 390, height: 844 };

function checkCsp(response, what) {
  check(response, `${what}: no response`);
  const csp = response.headers()['content-security-policy'];
  check(csp, `${what}: no Content-Security-Policy header`);
  check(/(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/.test(csp), `${what}: CSP lacks frame-ancestors 'none': ${csp}`);
}

/** Any content sticking out sideways: the page would scroll horizontally on this viewport. */
async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const doc = document.documentElement;
    return doc.scrollWidth > doc.clientWidth ? `${doc.scrollWidth}px wide in a ${doc.clientWidth}px viewport` : null;
  });
}

async function screenshot(page, dir, name) {
  if (!dir) return;
  const file = path.join(dir, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/** The next line on stdin, or a failure after `ms` or at the end of stdin. */
function readLine(ms) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    let settled = false;
    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(value);
      rl.close();
    };
    const timer = setTimeout(() => settle(reject, new CheckFailed(`nothing arrived on stdin within ${ms} ms`)), ms);
    rl.once('line', (line) => settle(resolve, line));
    rl.once('close', () => settle(reject, new CheckFailed('stdin closed before the go-ahead arrived')));
  });
}

const box = (b) => `${b.width.toFixed(1)}x${b.height.toFixed(1)} at (${b.x.toFixed(1)}, ${b.y.toFixed(1)})`;

async function run() {
  const base = env('BASE').replace(/\/+$/, '');
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const link = env('VERIFICATION_URI_COMPLETE');
  const userCode = env('USER_CODE');
  const deviceName = env('DEVICE_NAME', 'Browser-approved TV');
  const handshake = process.env.HANDSHAKE === '1';
  const shots = process.env.SCREENSHOT_DIR || '';
  const executablePath = env('CHROMIUM', '/usr/bin/chromium');
  if (shots) await mkdir(shots, { recursive: true });
  check(link.startsWith(`${base}/device?`), `VERIFICATION_URI_COMPLETE ${link} is not ${base}/device?…`);

  const browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout: 30_000 });
  try {
    // Approving happens on the phone in your hand: the whole walk is on a phone-sized screen.
    const context = await browser.newContext({ viewport: PHONE });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.setDefaultNavigationTimeout(15_000);

    const cspViolations = [];
    const pageErrors = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const navs = [];
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r);
    });
    const history = () => navs.map((r) => `${r.request().method()} ${new URL(r.url()).pathname} → ${r.status()}`).join(', ');
    const clickAndLand = async (button, pathname, what) => {
      const seen = navs.length;
      await Promise.all([page.waitForEvent('load'), button.click()]);
      if (new URL(page.url()).pathname !== pathname) {
        const err = await page.locator('.error, main p').first().textContent({ timeout: 1000 }).catch(() => null);
        check(false, `${what}: the browser is at ${page.url()} instead of ${pathname}` +
          `${err ? ` showing "${err.trim()}"` : ''}; navigations: ${history()}`);
      }
      const landed = navs.slice(seen).filter((r) => new URL(r.url()).pathname === pathname).pop();
      check(landed, `${what}: no response for ${pathname}; navigations: ${history()}`);
      return landed;
    };

    // 1. The link from the device's screen: not signed in yet, so off to /login, which
    //    remembers where to come back to.
    await page.goto(link);
    const atLogin = new URL(page.url());
    check(atLogin.pathname === '/login', `opening ${link} signed out lands on ${page.url()}, not /login; navigations: ${history()}`);
    const next = atLogin.searchParams.get('next');
    check(next === `/device?user_code=${userCode}`, `/login would return to ${JSON.stringify(next)}, not /device?user_code=${userCode}`);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);

    // 2. Signed in: back on /device with the code in the box and a Continue button. Nothing
    //    about the request has been decided by opening the link.
    const form = await clickAndLand(page.getByRole('button', { name: 'Sign in' }), '/device', 'signing in');
    check(form.status() === 200, `GET /device answered ${form.status()}`);
    checkCsp(form, 'GET /device');
    check(new URL(page.url()).searchParams.get('user_code') === userCode, `back at ${page.url()}, without user_code=${userCode}`);
    check((await page.locator('h1').textContent()).trim() === 'Connect a device', `/device shows "${await page.locator('h1').textContent()}"`);
    const filled = await page.getByLabel('Code').inputValue();
    check(filled === userCode, `the code box holds "${filled}", not "${userCode}"`);
    const main = await page.locator('main').textContent();
    check(!/approved|in front of you/i.test(main), `opening the link already went past the code form: ${main.trim()}`);
    check((await page.getByRole('button', { name: /approve/i }).count()) === 0, 'the code form already offers Approve');
    const wideForm = await horizontalOverflow(page);
    check(!wideForm, `/device on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideForm}`);
    await screenshot(page, shots, 'device-code-phone.png');
    if (handshake) {
      console.log('FORM_SHOWN');
      const go = await readLine(30_000);
      check(go.trim() === 'continue', `expected "continue" on stdin, got ${JSON.stringify(go)}`);
    }

    // 3. Continue: the confirmation screen with what the server saw of the device.
    const confirm = await clickAndLand(page.getByRole('button', { name: 'Continue' }), '/device', 'submitting the code');
    check(confirm.request().method() === 'POST', `the code form did not POST: ${history()}`);
    check(confirm.status() === 200, `POST /device answered ${confirm.status()}`);
    checkCsp(confirm, 'POST /device');
    const h1 = (await page.locator('h1').textContent()).trim();
    check(h1 === 'Is this device in front of you?', `the confirmation screen's heading is "${h1}"`);
    const fact = async (term) => {
      const dd = page.locator('dl.facts-list dt', { hasText: new RegExp(`^${term}$`) }).locator('xpath=following-sibling::dd[1]');
      check((await dd.count()) === 1, `no "${term}" on the confirmation screen`);
      return (await dd.textContent()).trim();
    };
    const app = await fact('App');
    check(app === 'Latchkey CLI', `App is "${app}", not "Latchkey CLI"`);
    const ip = await fact('Network address');
    check(ip === '127.0.0.1', `Network address is "${ip}", not "127.0.0.1"`);

    // Approve and Deny: side by side, the same size, neither one bigger to nudge the choice.
    const approve = page.getByRole('button', { name: 'Approve', exact: true });
    const deny = page.getByRole('button', { name: 'Deny', exact: true });
    check((await approve.count()) === 1 && (await deny.count()) === 1, 'the confirmation screen lacks one Approve and one Deny button');
    const a = await approve.boundingBox();
    const d = await deny.boundingBox();
    check(a && d, 'Approve or Deny is not visible');
    const same = (x, y) => Math.abs(x - y) <= 1;
    check(same(a.width, d.width) && same(a.height, d.height), `Approve is ${box(a)} but Deny is ${box(d)}: not the same size`);
    check(same(a.y, d.y), `Approve (${box(a)}) and Deny (${box(d)}) are not side by side`);
    check(a.height >= 44, `Approve is ${a.height}px tall, below a 44px touch target`);
    check(a.width >= 100, `Approve is only ${a.width}px wide on a phone`);
    const wideConfirm = await horizontalOverflow(page);
    check(!wideConfirm, `the confirmation screen on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideConfirm}`);
    await screenshot(page, shots, 'device-confirm-phone.png');

    // 4. Name it and approve.
    await page.getByLabel(/Name this device/).fill(deviceName);
    const done = await clickAndLand(approve, '/device/decision', 'approving');
    check(done.status() === 200, `POST /device/decision answered ${done.status()}`);
    const said = (await page.locator('main').textContent()).trim();
    check(/Device approved/.test(said), `after Approve the page says "${said}"`);
    await screenshot(page, shots, 'device-approved-phone.png');

    check(cspViolations.length === 0, `the pages break their own CSP: ${cspViolations.join(' | ')}`);
    check(pageErrors.length === 0, `script errors on the pages: ${pageErrors.join(' | ')}`);
    console.log(`ok: approved ${userCode} as "${deviceName}" (Approve and Deny both ${a.width.toFixed(0)}x${a.height.toFixed(0)})`);
  } finally {
    await browser.close();
  }
}

try {
  await run();
  process.exit(0);
} catch (e) {
  const why = e instanceof CheckFailed ? e.message : (e?.stack ?? String(e));
  console.error(`FAILED: ${why}`);
  process.exit(1);
}
