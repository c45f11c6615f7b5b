// A real headless-Chromium walk through the server-rendered pages: sign in at /login, land on
// /account, see this device and another one, revoke the other one, and see it gone.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… OTHER_DEVICE="Old phone" \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node e2e/account.mjs
//
// Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

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

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

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

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

function checkCsp(response, what) {
  check(response, `${what}: no response`);
  const csp = response.headers()['content-security-policy'];
  check(csp, `${what}: no Content-Security-Policy header`);
  check(/(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/.test(csp), `${what}: CSP lacks frame-ancestors 'none': ${csp}`);
}

async function deviceNames(page) {
  return page.$$eval('li.device .device-name', (els) => els.map((e) => e.textContent.trim()));
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

async function run() {
  const base = env('BASE').replace(/\/+$/, '');
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const other = env('OTHER_DEVICE');
  const shots = process.env.SCREENSHOT_DIR || '';
  const executablePath = env('CHROMIUM', '/usr/bin/chromium');
  if (shots) await mkdir(shots, { recursive: true });

  const browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout: 30_000 });
  try {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.setDefaultNavigationTimeout(15_000);

    // Console errors that name the CSP mean the page tries something its own policy forbids.
    const cspViolations = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    const failedCss = [];
    // Every top-level navigation, for the failure message and to find the page's response.
    const navs = [];
    page.on('response', (r) => {
      if (r.url().endsWith('.css') && r.status() !== 200) failedCss.push(`${r.url()} → ${r.status()}`);
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r);
    });
    const history = () => navs.map((r) => `${r.request().method()} ${new URL(r.url()).pathname} → ${r.status()}`).join(', ');
    /** Clicks, waits for the browser to arrive at `pathname`, and returns that page's response. */
    const clickAndLand = async (button, pathname, what) => {
      const seen = navs.length;
      // A form POST always loads a new document, wherever it ends up (redirects followed).
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

    // 1. The sign-in form.
    const login = await page.goto(`${base}/login`);
    check(login && login.status() === 200, `GET /login answered ${login?.status()}`);
    checkCsp(login, 'GET /login');
    check((await page.title()).includes('Sign in'), `GET /login has the title "${await page.title()}"`);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);

    // 2. Submit; the server sets the session cookie and redirects to /account.
    const account = await clickAndLand(page.getByRole('button', { name: 'Sign in' }), '/account', 'signing in');
    check(account.status() === 200, `GET /account answered ${account.status()}`);
    checkCsp(account, 'GET /account');
    const body = await page.locator('main').textContent();
    check(body.includes(email), `/account does not say who is signed in (${email})`);

    // 3. This browser is listed and marked; the other device is listed with a Revoke button.
    const current = page.locator('li.device').filter({ has: page.locator('.badge', { hasText: /^this device$/ }) });
    check((await current.count()) === 1, `expected one device marked "this device", found ${await current.count()}`);
    check(
      (await current.getByRole('button', { name: /revoke/i }).count()) === 0,
      'the current device offers a Revoke button',
    );
    const before = await deviceNames(page);
    check(before.includes(other), `"${other}" is not listed on /account; devices: ${JSON.stringify(before)}`);
    const otherItem = page
      .locator('li.device')
      .filter({ has: page.locator('.device-name', { hasText: new RegExp(`^\\s*${escapeRegExp(other)}\\s*$`) }) });
    check((await otherItem.count()) === 1, `expected one "${other}" entry, found ${await otherItem.count()}`);

    // Both viewports while there is a Revoke button to see.
    await screenshot(page, shots, 'account-before-revoke-desktop.png');
    await page.setViewportSize(PHONE);
    await screenshot(page, shots, 'account-before-revoke-phone.png');
    const wideBefore = await horizontalOverflow(page);
    check(!wideBefore, `/account on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideBefore}`);
    await page.setViewportSize(DESKTOP);

    // 4. Revoke it: a POST that redirects back to /account.
    const back = await clickAndLand(otherItem.getByRole('button', { name: `Revoke ${other}` }), '/account', 'revoking');
    check(back.status() === 200, `GET /account after revoking answered ${back.status()}`);
    const after = await deviceNames(page);
    check(!after.includes(other), `"${other}" is still listed after revoking; devices: ${JSON.stringify(after)}`);
    check(after.length === before.length - 1, `devices went from ${JSON.stringify(before)} to ${JSON.stringify(after)}`);
    check((await current.count()) === 1, 'this browser is no longer marked "this device" after revoking');

    // 5. Pictures, and a layout check, on a desktop and a phone-sized viewport.
    check(failedCss.length === 0, `stylesheet did not load: ${failedCss.join(', ')}`);
    const style = await page.evaluate(() => getComputedStyle(document.querySelector('main')).maxWidth);
    check(style !== 'none', 'app.css is not applied to the page (main has no max-width)');
    await screenshot(page, shots, 'account-desktop.png');
    const wideDesktop = await horizontalOverflow(page);
    check(!wideDesktop, `/account on ${DESKTOP.width}x${DESKTOP.height} scrolls sideways: ${wideDesktop}`);

    await page.setViewportSize(PHONE);
    await page.reload();
    await screenshot(page, shots, 'account-phone.png');
    const widePhone = await horizontalOverflow(page);
    check(!widePhone, `/account on ${PHONE.width}x${PHONE.height} scrolls sideways: ${widePhone}`);

    const phoneLogin = await browser.newPage({ viewport: PHONE });
    await phoneLogin.goto(`${base}/login`);
    await screenshot(phoneLogin, shots, 'login-phone.png');
    const wideLogin = await horizontalOverflow(phoneLogin);
    check(!wideLogin, `/login on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideLogin}`);
    await phoneLogin.close();

    check(cspViolations.length === 0, `the pages break their own CSP: ${cspViolations.join(' | ')}`);
    console.log(`ok: signed in as ${email}, revoked "${other}"; devices now ${JSON.stringify(after)}`);
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
