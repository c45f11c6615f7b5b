// A real headless-Chromium walk through the server-rendered pages: sign in at /login, land on
// /account, see this device and another one, revoke the other one, and see it gone.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… OTHER_DEVICE="Old phone" \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node e2e/account.mjs
//
// Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import {
  env, check, checkCsp, horizontalOverflow, screenshot, watchedPage, baseUrl, screenshotDir, withBrowser, main, DESKTOP, PHONE,
} from './lib.mjs';

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function deviceNames(page) {
  return page.$$eval('li.device .device-name', (els) => els.map((e) => e.textContent.trim()));
}

async function run() {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const other = env('OTHER_DEVICE');
  const shots = await screenshotDir();

  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const w = await watchedPage(context);
    const { page, clickAndLand } = w;
    const failedCss = [];
    page.on('response', (r) => {
      if (r.url().endsWith('.css') && r.status() !== 200) failedCss.push(`${r.url()} → ${r.status()}`);
    });

    // 1. The sign-in form.
    const login = await page.goto(`${base}/login`);
    check(login && login.status() === 200, `GET /login answered ${login?.status()}`);
    checkCsp(login, 'GET /login');
    check((await page.title()).includes('Sign in'), `GET /login has the title "${await page.title()}"`);

    // 2. Submit; the server sets the session cookie and redirects to /account.
    const account = await w.signIn(email, password, '/account', 'signing in');
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

    w.cleanCsp();
    console.log(`ok: signed in as ${email}, revoked "${other}"; devices now ${JSON.stringify(after)}`);
  });
}

await main(run);
