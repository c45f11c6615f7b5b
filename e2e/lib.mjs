// What the headless-Chromium page tests (account, device, pair, mfa, qr) share: reading the
// environment, failing with a reason, launching Debian's Chromium, a page that records its
// navigations, CSP violations and script errors, signing in on /login, the stdin handshake,
// screenshots and layout checks. Never downloads a browser.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import path from 'node:path';

/** The environment variable `name`, or `fallback`; an error when neither is set. */
export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`env var ${name} is not set`);
  return v;
};

/** A check that did not hold: reported by its message alone, without a stack. */
export class CheckFailed extends Error {}

export const check = (ok, why) => {
  if (!ok) throw new CheckFailed(why);
};

export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** BASE without trailing slashes. */
export const baseUrl = () => env('BASE').replace(/\/+$/, '');

/** SCREENSHOT_DIR, created if set; '' when screenshots are off. */
export async function screenshotDir() {
  const shots = process.env.SCREENSHOT_DIR || '';
  if (shots) await mkdir(shots, { recursive: true });
  return shots;
}

/** Runs `fn(browser)` with Chromium (CHROMIUM, default /usr/bin/chromium), closed afterwards. */
export async function withBrowser(fn) {
  const executablePath = env('CHROMIUM', '/usr/bin/chromium');
  const browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout: 30_000 });
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

/** Runs the script: exit 0 when `run` succeeds, else `FAILED: <why>` on stderr and exit 1. */
export async function main(run) {
  try {
    await run();
    process.exit(0);
  } catch (e) {
    const why = e instanceof CheckFailed ? e.message : (e?.stack ?? String(e));
    console.error(`FAILED: ${why}`);
    process.exit(1);
  }
}

export function checkCsp(response, what) {
  check(response, `${what}: no response`);
  const csp = response.headers()['content-security-policy'];
  check(csp, `${what}: no Content-Security-Policy header`);
  check(/(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/.test(csp), `${what}: CSP lacks frame-ancestors 'none': ${csp}`);
}

/** Any content sticking out sideways: the page would scroll horizontally on this viewport. */
export async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const doc = document.documentElement;
    return doc.scrollWidth > doc.clientWidth ? `${doc.scrollWidth}px wide in a ${doc.clientWidth}px viewport` : null;
  });
}

/** Saves a picture of `target` as `dir/name` when `dir` is set, and says so. */
export async function screenshot(target, dir, name) {
  if (!dir) return;
  const file = path.join(dir, name);
  // A page gets its whole length; an element just itself.
  await target.screenshot(typeof target.goto === 'function' ? { path: file, fullPage: true } : { path: file });
  console.log(`screenshot: ${file}`);
}

export const box = (b) => `${b.width.toFixed(1)}x${b.height.toFixed(1)} at (${b.x.toFixed(1)}, ${b.y.toFixed(1)})`;
/** Within a pixel of each other. */
export const same = (x, y) => Math.abs(x - y) <= 1;
export const text = async (locator) => ((await locator.textContent()) ?? '').replace(/\s+/g, ' ').trim();

/** The `dd` after the `dt` saying `term` in `dl.facts-list`, read by `read`. */
export async function fact(page, term, where, read = async (l) => (await l.textContent()).trim()) {
  const dd = page.locator('dl.facts-list dt', { hasText: new RegExp(`^${term}$`) }).locator('xpath=following-sibling::dd[1]');
  check((await dd.count()) === 1, `no "${term}" on ${where}`);
  return read(dd);
}

/**
 * The next line on stdin, or a failure after `ms` (`<none> arrived on stdin within <ms> ms`) or
 * at the end of stdin (`stdin closed before <awaited> arrived`).
 */
export function readLine(ms, none, awaited) {
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
    const timer = setTimeout(() => settle(reject, new CheckFailed(`${none} arrived on stdin within ${ms} ms`)), ms);
    rl.once('line', (line) => settle(resolve, line));
    rl.once('close', () => settle(reject, new CheckFailed(`stdin closed before ${awaited} arrived`)));
  });
}

/** A page that records its main-frame navigations, CSP violations and script errors. */
export async function watchedPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(15_000);
  const w = { page, navs: [], requests: [], cspViolations: [], pageErrors: [] };
  page.on('request', (r) => w.requests.push(r.url()));
  // Console errors that name the CSP mean the page tries something its own policy forbids.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) w.cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => w.pageErrors.push(String(e)));
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) w.navs.push(r);
  });
  /** The navigations since the `from`th, for failure messages. */
  w.history = (from = 0) => w.navs.slice(from).map((r) => `${r.request().method()} ${new URL(r.url()).pathname} → ${r.status()}`).join(', ');
  /** Clicks, waits for the browser to arrive at `pathname`, and returns that page's response. */
  w.clickAndLand = async (button, pathname, what) => {
    const seen = w.navs.length;
    // A form POST always loads a new document, wherever it ends up (redirects followed).
    await Promise.all([page.waitForEvent('load'), button.click()]);
    if (new URL(page.url()).pathname !== pathname) {
      const err = await page.locator('.error, main p').first().textContent({ timeout: 1000 }).catch(() => null);
      check(false, `${what}: the browser is at ${page.url()} instead of ${pathname}` +
        `${err ? ` showing "${err.trim()}"` : ''}; navigations: ${w.history()}`);
    }
    const landed = w.navs.slice(seen).filter((r) => new URL(r.url()).pathname === pathname).pop();
    check(landed, `${what}: no response for ${pathname}; navigations: ${w.history()}`);
    return landed;
  };
  /** Fills the /login form on screen, signs in and lands on `pathname`; returns its response. */
  w.signIn = async (email, password, pathname, what) => {
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    return w.clickAndLand(page.getByRole('button', { name: 'Sign in', exact: true }), pathname, what);
  };
  w.cleanCsp = () => {
    check(w.cspViolations.length === 0, `the pages break their own CSP: ${w.cspViolations.join(' | ')}`);
  };
  w.clean = () => {
    w.cleanCsp();
    check(w.pageErrors.length === 0, `script errors on the pages: ${w.pageErrors.join(' | ')}`);
  };
  return w;
}

/** Waits for `fn` (run in the page) to hold, or fails with what `why` says it saw. */
export async function waitInPage(page, fn, arg, ms, why) {
  await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 }).catch(async (e) => {
    if (!(e instanceof Error) || !/Timeout/i.test(e.message)) throw e;
    check(false, await why());
  });
}
