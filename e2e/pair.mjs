// A real headless-Chromium walk through pairing, as the signed-in phone: sign in, open /pair,
// ask for a code, see it big with its warning and a running countdown, wait until the new
// device has typed it (pair.js shows who joined without a reload), and allow it.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… [DEVICE_NAME="Kitchen tablet"] \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node e2e/pair.mjs
//
// Prints `CODE=<code>` on stdout as soon as the code is on screen; whoever runs the script
// redeems it as the new device (POST /api/v1/pairing-codes/redeem with device.name =
// DEVICE_NAME) within 15 seconds. Exits 0 when every check holds; otherwise prints why and
// exits 1. Run by crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads one.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
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
/** Narrower phones: many Android phones are 360 wide, the smallest still in use 320. */
const NARROW = [{ width: 360, height: 780 }, { width: 320, height: 640 }];
/** How long the new device may take to type the code once it is shown. */
const JOIN_TIMEOUT_MS = 15_000;

function checkCsp(response, what) {
  check(response, `${what}: no response`);
  const csp = response.headers()['content-security-policy'];
  check(csp, `${what}: no Content-Security-Policy header`);
  check(/(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/.test(csp), `${what}: CSP lacks frame-ancestors 'none': ${csp}`);
}

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

const box = (b) => `${b.width.toFixed(1)}x${b.height.toFixed(1)} at (${b.x.toFixed(1)}, ${b.y.toFixed(1)})`;

async function run() {
  const base = env('BASE').replace(/\/+$/, '');
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const deviceName = env('DEVICE_NAME', 'Kitchen tablet');
  const shots = process.env.SCREENSHOT_DIR || '';
  const executablePath = env('CHROMIUM', '/usr/bin/chromium');
  if (shots) await mkdir(shots, { recursive: true });

  const browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout: 30_000 });
  try {
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
    const statusPolls = [];
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r);
      if (/^\/pair\/[^/]+\/status$/.test(new URL(r.url()).pathname)) statusPolls.push(r.status());
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

    // 1. /pair signed out goes to /login and comes back.
    await page.goto(`${base}/pair`);
    check(new URL(page.url()).pathname === '/login', `GET /pair signed out lands on ${page.url()}; navigations: ${history()}`);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    const start = await clickAndLand(page.getByRole('button', { name: 'Sign in' }), '/pair', 'signing in');
    check(start.status() === 200, `GET /pair answered ${start.status()}`);
    checkCsp(start, 'GET /pair');

    // 2. Ask for a code.
    const shown = await clickAndLand(page.getByRole('button', { name: 'Show a pairing code' }), '/pair', 'asking for a code');
    check(shown.request().method() === 'POST' && shown.status() === 200, `asking for a code: ${history()}`);
    checkCsp(shown, 'POST /pair');
    const navsAtCode = navs.length;
    const code = (await page.locator('#code').textContent()).trim();
    check(/^[BCDFGHJKLMNPQRSTVWXZ]{5}-[BCDFGHJKLMNPQRSTVWXZ]{5}$/.test(code), `#code shows "${code}", not a XXXXX-XXXXX code`);
    const warning = page.getByText('Never share this code');
    check(await warning.isVisible(), 'no visible "Never share this code" warning');

    // The code is the point of the page: big, on one line, whole, on this phone and on the
    // narrower ones most Android phones are.
    for (const viewport of [PHONE, ...NARROW]) {
      await page.setViewportSize(viewport);
      const codeBox = await page.locator('#code').boundingBox();
      const codeStyle = await page.locator('#code').evaluate((el) => ({
        font: parseFloat(getComputedStyle(el).fontSize),
        line: parseFloat(getComputedStyle(el).lineHeight),
        overflow: el.scrollWidth > el.clientWidth,
      }));
      const at = `at ${viewport.width}x${viewport.height}`;
      check(codeStyle.font >= 24, `${at} the code is set in ${codeStyle.font}px type`);
      check(codeBox && codeBox.x >= 0 && codeBox.x + codeBox.width <= viewport.width, `${at} the code box ${codeBox && box(codeBox)} is off screen`);
      check(!codeStyle.overflow, `${at} the code overflows its box`);
      // One line of text plus the box's padding and border.
      check(codeBox.height < codeStyle.line * 1.5 + 40, `${at} the code wraps onto more than one line (${box(codeBox)}, ${codeStyle.font}px type)`);
      const wide = await horizontalOverflow(page);
      check(!wide, `/pair ${at} scrolls sideways: ${wide}`);
    }
    await page.setViewportSize(PHONE);
    await screenshot(page, shots, 'pair-code-phone.png');

    const countdown = page.locator('#countdown');
    const first = (await countdown.textContent()).trim();
    await page
      .waitForFunction((before) => document.getElementById('countdown').textContent.trim() !== before, first, { timeout: 2_000 })
      .catch(() => check(false, `#countdown still says "${first}" after 2 s`));
    const second = (await countdown.textContent()).trim();
    check(/^\d+:\d\d$/.test(second), `#countdown went from "${first}" to "${second}", not m:ss`);

    // Now the new device may type it.
    console.log(`CODE=${code}`);

    // 3. Someone types the code: pair.js shows who, with the name in quotes, no reload.
    const claimed = page.locator('#status .claimed, #status dd', { hasText: `\u201c${deviceName}\u201d` });
    await claimed
      .first()
      .waitFor({ state: 'visible', timeout: JOIN_TIMEOUT_MS })
      .catch(() => check(false, `"${deviceName}" did not show up within ${JOIN_TIMEOUT_MS} ms; status polls: ${statusPolls.join(', ')}`));
    check(navs.length === navsAtCode, `the page reloaded while waiting: ${history()}`);
    const status = page.locator('#status');
    check((await status.locator('h2').textContent()).trim() === 'Someone used the code', `#status says "${(await status.textContent()).trim()}"`);
    const seen = (await status.locator('.seen').textContent()).trim();
    check(seen.includes('127.0.0.1'), `"What we saw" does not give the address: "${seen}"`);
    check(!/\b1 (second|minute|hour)s\b/.test(seen), `"What we saw" has a plural for one: "${seen}"`);
    const allow = status.getByRole('button', { name: 'Allow', exact: true });
    const deny = status.getByRole('button', { name: 'Deny', exact: true });
    const a = await allow.boundingBox();
    const d = await deny.boundingBox();
    check(a && d, 'Allow or Deny is not visible');
    const same = (x, y) => Math.abs(x - y) <= 1;
    check(same(a.width, d.width) && same(a.height, d.height) && same(a.y, d.y), `Allow ${box(a)} and Deny ${box(d)} differ`);
    const wideJoined = await horizontalOverflow(page);
    check(!wideJoined, `/pair with a joiner on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideJoined}`);
    await screenshot(page, shots, 'pair-joined-phone.png');

    // 4. Allow it.
    const id = await page.locator('#pairing').getAttribute('data-id');
    const done = await clickAndLand(allow, `/pair/${id}/approve`, 'allowing');
    check(done.status() === 200, `POST /pair/${id}/approve answered ${done.status()}`);
    const said = (await page.locator('main').textContent()).trim();
    check(/Device allowed/.test(said), `after Allow the page says "${said}"`);

    check(cspViolations.length === 0, `the pages break their own CSP: ${cspViolations.join(' | ')}`);
    check(pageErrors.length === 0, `script errors on the pages: ${pageErrors.join(' | ')}`);
    console.log(`ok: "${deviceName}" joined with ${code} and was allowed; countdown "${first}" → "${second}"`);
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
