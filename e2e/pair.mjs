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

import {
  env, check, checkCsp, horizontalOverflow, screenshot, watchedPage, box, same, baseUrl, screenshotDir, withBrowser, main, PHONE,
} from './lib.mjs';

/** Narrower phones: many Android phones are 360 wide, the smallest still in use 320. */
const NARROW = [{ width: 360, height: 780 }, { width: 320, height: 640 }];
/** How long the new device may take to type the code once it is shown. */
const JOIN_TIMEOUT_MS = 15_000;

async function run() {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const deviceName = env('DEVICE_NAME', 'Kitchen tablet');
  const shots = await screenshotDir();

  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: PHONE });
    const w = await watchedPage(context);
    const { page, navs, history, clickAndLand } = w;
    const statusPolls = [];
    page.on('response', (r) => {
      if (/^\/pair\/[^/]+\/status$/.test(new URL(r.url()).pathname)) statusPolls.push(r.status());
    });

    // 1. /pair signed out goes to /login and comes back.
    await page.goto(`${base}/pair`);
    check(new URL(page.url()).pathname === '/login', `GET /pair signed out lands on ${page.url()}; navigations: ${history()}`);
    const start = await w.signIn(email, password, '/pair', 'signing in');
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

    w.clean();
    console.log(`ok: "${deviceName}" joined with ${code} and was allowed; countdown "${first}" → "${second}"`);
  });
}

await main(run);
