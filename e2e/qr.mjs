// A real headless-Chromium walk through QR login, in one of two parts (MODE):
//
// MODE=browser (the default): the computer. Open /login on a desktop-sized screen, read the QR
// from the page and hand it to the caller, see the page notice the scan and show the number,
// and, once the phone has approved, see the page sign itself in and land on /account.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… [PHONE_NAME="Ann's phone"] [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM=/usr/bin/chromium] node e2e/qr.mjs
//
//   Prints `QR_SVG=<base64 of the QR's SVG>` and `QR_URL=<the URL the page says it encodes>`
//   once the QR is on screen; the caller decodes the QR and scans it as the phone (GET
//   /api/v1/qr-logins/{id}). Once the page shows "Scanned on …" and the number, the script
//   prints `NUMBER=<the number>`; the caller approves with it. The page must then reach
//   /account by itself; the script checks it shows EMAIL (or the placeholder for an account
//   without one, when EMAIL is `-`) and this device, prints `DONE` and exits.
//
// MODE=phone: the phone's own browser. Open QR_URL (a QR login the caller started through the
// API) signed out on a phone-sized screen, sign in on the way as EMAIL/PASSWORD, come back to
// /q/<id>, check the three numbers and the Deny button, print `CHOICES=<a>,<b>,<c>`, deny, and
// see "Denied".
//
//   BASE=… MODE=phone EMAIL=… PASSWORD=… QR_URL=… [ASKING_BROWSER="Firefox on Windows"] \
//     [SCREENSHOT_DIR=…] node e2e/qr.mjs
//
// Exits 0 when every check holds; otherwise prints `FAILED: <why>` and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import {
  env, check, checkCsp, horizontalOverflow, screenshot, watchedPage, waitInPage, fact as factOn, box, same, text, baseUrl,
  screenshotDir, withBrowser, main, DESKTOP, PHONE,
} from './lib.mjs';

/** How long the caller may take to scan, and then to approve. */
const CALLER_TIMEOUT_MS = 30_000;
/** What /account says for an account without an e-mail address. */
const NO_EMAIL = 'an account without e-mail';

async function browserPart(browser, base, shots) {
  const email = env('EMAIL');
  const phoneName = process.env.PHONE_NAME || '';
  const context = await browser.newContext({ viewport: DESKTOP });
  const w = await watchedPage(context);
  const { page } = w;
  const status = page.locator('#qr-status');
  const number = page.locator('#qr-number');
  const panelSays = async () => `#qr-status says "${await text(status)}", #qr-number ${await number.isVisible() ? 'shows' : 'hides'} ` +
    `"${await text(number)}"; at ${page.url()}; navigations: ${w.history()}`;

  // 1. /login, signed out: the QR appears next to the password form.
  const login = await page.goto(`${base}/login`);
  check(login && login.status() === 200, `GET /login answered ${login && login.status()}`);
  checkCsp(login, 'GET /login');
  const img = page.locator('#qr-login #qr-img');
  await img.waitFor({ state: 'visible' }).catch(async () => check(false, `no QR (#qr-img) on /login: ${await panelSays()}`));
  const src = await img.getAttribute('src');
  const prefix = 'data:image/svg+xml;base64,';
  check(src && src.startsWith(prefix), `#qr-img's src is not a base64 SVG data URL: ${String(src).slice(0, 80)}`);
  const svg = src.slice(prefix.length);
  check(/^[A-Za-z0-9+/]+=*$/.test(svg), `#qr-img's src is not valid base64 after ${prefix}`);
  const url = await img.getAttribute('data-url');
  check(url && url.startsWith(`${base}/q/`), `#qr-img's data-url "${url}" is not ${base}/q/…`);
  // Drawn at a scannable size, and really drawn (the SVG decoded into an image).
  const drawn = await img.evaluate((el) => ({ w: el.naturalWidth, shown: el.getBoundingClientRect().width, complete: el.complete }));
  check(drawn.complete && drawn.w > 0, `#qr-img did not load as an image: ${JSON.stringify(drawn)}`);
  check(drawn.shown >= 160, `the QR is only ${drawn.shown}px wide on a ${DESKTOP.width}px screen`);
  // Before any scan the number stays hidden: it is the phone's to match, not to read off first.
  check(!(await number.isVisible()), `the number is shown before anything scanned: ${await panelSays()}`);
  await waitInPage(page, () => /Waiting for your phone/.test(document.getElementById('qr-status').textContent), null, 3_000,
    async () => `no "Waiting for your phone…" countdown: ${await panelSays()}`);
  await screenshot(page.locator('#qr-login'), shots, 'qr-login-waiting.png');
  await screenshot(page, shots, 'qr-login-desktop.png');
  const navsBeforeScan = w.navs.length;
  console.log(`QR_SVG=${svg}`);
  console.log(`QR_URL=${url}`);

  // 2. The caller scans it as the phone: the page says so and shows the number, no reload.
  await waitInPage(page, () => /^Scanned on /.test(document.getElementById('qr-status').textContent.trim()) &&
    !document.getElementById('qr-number').hidden, null, CALLER_TIMEOUT_MS,
  async () => `no "Scanned on …" with the number within ${CALLER_TIMEOUT_MS} ms: ${await panelSays()}`);
  const said = await text(status);
  if (phoneName) check(said.startsWith(`Scanned on ${phoneName}`), `after the scan the page says "${said}", not "Scanned on ${phoneName}…"`);
  check(await number.isVisible(), `the number is not visible after the scan: ${await panelSays()}`);
  const shown = await text(number);
  check(/^[1-9][0-9]$/.test(shown), `#qr-number shows "${shown}", not a two-digit number`);
  const size = await number.evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
  check(size >= 32, `the number is set in ${size}px type: too small to compare at a glance`);
  check(w.navs.length === navsBeforeScan, `the page reloaded while waiting for the scan: ${w.history()}`);
  await screenshot(page.locator('#qr-login'), shots, 'qr-login-scanned.png');
  console.log(`NUMBER=${shown}`);

  // 3. The caller approves with the number: the page collects its session and goes to /account
  //    by itself.
  await page.waitForURL((u) => u.pathname === '/account', { timeout: CALLER_TIMEOUT_MS }).catch(async (e) => {
    if (!(e instanceof Error) || !/Timeout/i.test(e.message)) throw e;
    check(false, `not on /account ${CALLER_TIMEOUT_MS} ms after the scan: ${await panelSays()}`);
  });
  await page.waitForLoadState('load');
  const paths = w.navs.map((r) => `${r.request().method()} ${new URL(r.url()).pathname}`);
  check(paths.join(', ') === 'GET /login, GET /account', `expected GET /login then GET /account and nothing else: ${w.history()}`);
  const account = w.navs[w.navs.length - 1];
  check(account.status() === 200, `GET /account answered ${account.status()}`);
  checkCsp(account, 'GET /account');
  const who = await text(page.locator('main p', { hasText: 'Signed in as' }).first());
  const expected = email === '-' ? NO_EMAIL : email;
  check(who === `Signed in as ${expected}.`, `/account says "${who}", not "Signed in as ${expected}."`);
  const here = page.locator('li.device', { has: page.locator('.badge', { hasText: 'this device' }) });
  check((await here.count()) === 1, `/account marks ${await here.count()} devices as "this device"`);
  const facts = await text(here.locator('.facts').first());
  check(/signed in by qr\b/.test(facts), `this browser's device says "${facts}", not "signed in by qr"`);
  if (phoneName) {
    const phone = page.locator('li.device .device-name', { hasText: phoneName });
    check((await phone.count()) === 1, `/account does not list the phone "${phoneName}"`);
  }
  const wide = await horizontalOverflow(page);
  check(!wide, `/account on ${DESKTOP.width}x${DESKTOP.height} scrolls sideways: ${wide}`);
  await screenshot(page, shots, 'qr-account.png');
  w.clean();
  await context.close();
  console.log(`ok: signed in by QR with the number ${shown}; /account shows "${who}" and this device (${facts})`);
}

async function phonePart(browser, base, shots) {
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const qrUrl = env('QR_URL');
  check(qrUrl.startsWith(`${base}/q/`), `QR_URL ${qrUrl} is not ${base}/q/…`);
  const qrPath = new URL(qrUrl).pathname;
  const id = qrPath.slice('/q/'.length);
  const context = await browser.newContext({ viewport: PHONE });
  const w = await watchedPage(context);
  const { page } = w;

  // 1. The camera opens the QR's link; signed out, that is /login first, and back.
  await page.goto(qrUrl);
  const atLogin = new URL(page.url());
  check(atLogin.pathname === '/login', `opening ${qrUrl} signed out lands on ${page.url()}, not /login; navigations: ${w.history()}`);
  check(atLogin.searchParams.get('next') === qrPath, `/login would return to ${JSON.stringify(atLogin.searchParams.get('next'))}, not ${qrPath}`);
  const shown = await w.signIn(email, password, qrPath, 'signing in');
  check(shown.status() === 200, `GET ${qrPath} answered ${shown.status()}`);
  checkCsp(shown, `GET ${qrPath}`);

  // 2. "Sign in this browser?": who asks, and three numbers to pick the browser's one from.
  const h1 = await text(page.locator('h1'));
  check(h1 === 'Sign in this browser?', `/q/<id>'s heading is "${h1}"`);
  await screenshot(page, shots, 'qr-phone.png');
  const fact = (term) => factOn(page, term, '/q/<id>', text);
  if (process.env.ASKING_BROWSER) {
    const asking = await fact('Browser');
    check(asking === process.env.ASKING_BROWSER, `Browser is "${asking}", not "${process.env.ASKING_BROWSER}"`);
  }
  const ip = await fact('Network address');
  check(ip === '127.0.0.1', `Network address is "${ip}", not "127.0.0.1"`);
  check((await page.locator('.warning').count()) === 0, 'a different-network warning although both are on 127.0.0.1');
  const numbers = page.locator('.choices button');
  check((await numbers.count()) === 3, `/q/<id> offers ${await numbers.count()} number buttons, not 3`);
  const choices = [];
  const boxes = [];
  for (let i = 0; i < 3; i++) {
    const b = numbers.nth(i);
    choices.push(await text(b));
    boxes.push(await b.boundingBox());
  }
  check(choices.every((c) => /^[1-9][0-9]$/.test(c)), `the number buttons say ${JSON.stringify(choices)}`);
  check(new Set(choices).size === 3, `the numbers are not distinct: ${JSON.stringify(choices)}`);
  const deny = page.getByRole('button', { name: /^Deny/ });
  check((await deny.count()) === 1, `/q/<id> has ${await deny.count()} Deny buttons`);
  const d = await deny.boundingBox();
  check(boxes.every(Boolean) && d, 'a number button or Deny is not visible');
  // The numbers side by side, all the same size: none is made to look like the answer.
  const [first] = boxes;
  check(boxes.every((b) => same(b.width, first.width) && same(b.height, first.height) && same(b.y, first.y)),
    `the number buttons differ in size or row: ${boxes.map(box).join(' | ')}`);
  check(first.height >= 44, `the number buttons are ${first.height}px tall, below a 44px touch target`);
  check(first.width >= 80, `the number buttons are only ${first.width}px wide on a phone`);
  // Deny: a row of its own under the numbers, exactly as wide as their row, and a full touch
  // target.
  const last = boxes[2];
  const row = { x: first.x, width: last.x + last.width - first.x, y: first.y, height: first.height };
  check(same(d.x, row.x) && same(d.width, row.width), `Deny (${box(d)}) is not as wide as the row of numbers (${box(row)})`);
  check(d.y >= row.y + row.height, `Deny (${box(d)}) is not below the numbers (${box(row)})`);
  check(d.height >= 44, `Deny is ${d.height}px tall, below a 44px touch target`);
  const wide = await horizontalOverflow(page);
  check(!wide, `/q/<id> on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wide}`);
  console.log(`CHOICES=${choices.join(',')}`);

  // 3. Deny.
  const done = await w.clickAndLand(deny, `/q/${id}/deny`, 'denying');
  check(done.status() === 200 && done.request().method() === 'POST', `denying: ${w.history()}`);
  const said = await text(page.locator('main'));
  check(/^Denied\b/.test(said) || /\bDenied\./.test(said), `after Deny the page says "${said}"`);
  await screenshot(page, shots, 'qr-phone-denied.png');
  w.clean();
  await context.close();
  console.log(`ok: /q/<id> offered ${choices.join(', ')} (each ${first.width.toFixed(0)}x${first.height.toFixed(0)}, Deny ` +
    `${d.width.toFixed(0)}x${d.height.toFixed(0)}) and was denied`);
}

async function run() {
  const base = baseUrl();
  const mode = process.env.MODE || 'browser';
  check(mode === 'browser' || mode === 'phone', `MODE is "${mode}", not "browser" or "phone"`);
  const shots = await screenshotDir();
  await withBrowser(async (browser) => {
    if (mode === 'browser') await browserPart(browser, base, shots);
    else await phonePart(browser, base, shots);
  });
  console.log('DONE');
}

await main(run);
