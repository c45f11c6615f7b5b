// A real headless-Chromium walk through approving a device-grant code on a phone: open the
// verification_uri_complete link, get sent to /login, sign in, come back to /device with the
// code filled in (and nothing approved yet), continue to "Is this device in front of you?",
// check the facts and the Approve/Deny buttons, name the device and approve it.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… VERIFICATION_URI_COMPLETE=… USER_CODE=BCDF-GHJK \
//     [DEVICE_NAME="Browser-approved TV"] [HANDSHAKE=1] [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM=/usr/bin/chromium] node e2e/device.mjs
//
// With FORWARDED_FOR=<address> the browser's requests carry `X-Forwarded-For` (the server trusts
// 127.0.0.1 as a proxy), so it is on another network than the device, whose address REQUESTER_IP
// names: the screen must warn, and Approve must not go through until "I started this on a device
// in front of me" is ticked (Deny needs no tick).
//
// With HANDSHAKE=1 the script prints `FORM_SHOWN` once the code form is on screen and waits for
// a line on stdin before it goes on, so that the caller can check that merely opening the link
// approved nothing. Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import {
  env, check, checkCsp, horizontalOverflow, screenshot, readLine, watchedPage, fact as factOn, box, same, baseUrl, screenshotDir,
  withBrowser, main, PHONE,
} from './lib.mjs';

async function run() {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const link = env('VERIFICATION_URI_COMPLETE');
  const userCode = env('USER_CODE');
  const deviceName = env('DEVICE_NAME', 'Browser-approved TV');
  const handshake = process.env.HANDSHAKE === '1';
  const forwardedFor = process.env.FORWARDED_FOR || '';
  const requesterIp = env('REQUESTER_IP', '127.0.0.1');
  const shots = await screenshotDir();
  check(link.startsWith(`${base}/device?`), `VERIFICATION_URI_COMPLETE ${link} is not ${base}/device?…`);

  await withBrowser(async (browser) => {
    // Approving happens on the phone in your hand: the whole walk is on a phone-sized screen.
    const context = await browser.newContext({ viewport: PHONE, extraHTTPHeaders: forwardedFor ? { 'X-Forwarded-For': forwardedFor } : {} });
    const w = await watchedPage(context);
    const { page, history, clickAndLand } = w;

    // 1. The link from the device's screen: not signed in yet, so off to /login, which
    //    remembers where to come back to.
    await page.goto(link);
    const atLogin = new URL(page.url());
    check(atLogin.pathname === '/login', `opening ${link} signed out lands on ${page.url()}, not /login; navigations: ${history()}`);
    const next = atLogin.searchParams.get('next');
    check(next === `/device?user_code=${userCode}`, `/login would return to ${JSON.stringify(next)}, not /device?user_code=${userCode}`);

    // 2. Signed in: back on /device with the code in the box and a Continue button. Nothing
    //    about the request has been decided by opening the link.
    const form = await w.signIn(email, password, '/device', 'signing in');
    check(form.status() === 200, `GET /device answered ${form.status()}`);
    checkCsp(form, 'GET /device');
    check(new URL(page.url()).searchParams.get('user_code') === userCode, `back at ${page.url()}, without user_code=${userCode}`);
    check((await page.locator('h1').textContent()).trim() === 'Connect a device', `/device shows "${await page.locator('h1').textContent()}"`);
    const filled = await page.getByLabel('Code').inputValue();
    check(filled === userCode, `the code box holds "${filled}", not "${userCode}"`);
    const mainText = await page.locator('main').textContent();
    check(!/approved|in front of you/i.test(mainText), `opening the link already went past the code form: ${mainText.trim()}`);
    check((await page.getByRole('button', { name: /approve/i }).count()) === 0, 'the code form already offers Approve');
    const wideForm = await horizontalOverflow(page);
    check(!wideForm, `/device on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideForm}`);
    await screenshot(page, shots, 'device-code-phone.png');
    if (handshake) {
      console.log('FORM_SHOWN');
      const go = await readLine(30_000, 'nothing', 'the go-ahead');
      check(go.trim() === 'continue', `expected "continue" on stdin, got ${JSON.stringify(go)}`);
    }

    // 3. Continue: the confirmation screen with what the server saw of the device.
    const confirm = await clickAndLand(page.getByRole('button', { name: 'Continue' }), '/device', 'submitting the code');
    check(confirm.request().method() === 'POST', `the code form did not POST: ${history()}`);
    check(confirm.status() === 200, `POST /device answered ${confirm.status()}`);
    checkCsp(confirm, 'POST /device');
    const h1 = (await page.locator('h1').textContent()).trim();
    check(h1 === 'Is this device in front of you?', `the confirmation screen's heading is "${h1}"`);
    const fact = (term) => factOn(page, term, 'the confirmation screen');
    const app = await fact('App');
    check(app === 'Latchkey CLI', `App is "${app}", not "Latchkey CLI"`);
    const ip = await fact('Network address');
    check(ip === requesterIp, `Network address is "${ip}", not "${requesterIp}"`);
    const warning = page.locator('p.warning');
    const tick = page.getByLabel('I started this on a device in front of me');
    if (forwardedFor) {
      check(await warning.isVisible(), 'no different-network warning on the confirmation screen');
      const says = (await warning.textContent()).replace(/\s+/g, ' ');
      check(says.includes('different network') && says.includes(requesterIp), `the warning says "${says}"`);
      check((await tick.count()) === 1, 'no "I started this on a device in front of me" checkbox');
    } else {
      check((await warning.count()) === 0 && (await tick.count()) === 0, 'a warning or tick on a same-network request');
    }

    // Approve and Deny: side by side, the same size, neither one bigger to nudge the choice.
    const approve = page.getByRole('button', { name: 'Approve', exact: true });
    const deny = page.getByRole('button', { name: 'Deny', exact: true });
    check((await approve.count()) === 1 && (await deny.count()) === 1, 'the confirmation screen lacks one Approve and one Deny button');
    const a = await approve.boundingBox();
    const d = await deny.boundingBox();
    check(a && d, 'Approve or Deny is not visible');
    check(same(a.width, d.width) && same(a.height, d.height), `Approve is ${box(a)} but Deny is ${box(d)}: not the same size`);
    check(same(a.y, d.y), `Approve (${box(a)}) and Deny (${box(d)}) are not side by side`);
    check(a.height >= 44, `Approve is ${a.height}px tall, below a 44px touch target`);
    check(a.width >= 100, `Approve is only ${a.width}px wide on a phone`);
    const wideConfirm = await horizontalOverflow(page);
    check(!wideConfirm, `the confirmation screen on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideConfirm}`);
    await screenshot(page, shots, 'device-confirm-phone.png');

    // 4. Name it and approve.
    await page.getByLabel(/Name this device/).fill(deviceName);
    if (forwardedFor) {
      // Approve without the tick: the browser keeps the form (the field is required).
      const before = w.navs.length;
      await approve.click();
      await page.waitForTimeout(300);
      check(w.navs.length === before, `Approve went through without the tick: ${history(before)}`);
      check(await tick.evaluate((el) => !el.checkValidity()), 'the unticked box is not flagged as required');
      await tick.check();
    }
    const done = await clickAndLand(approve, '/device/decision', 'approving');
    check(done.status() === 200, `POST /device/decision answered ${done.status()}`);
    const said = (await page.locator('main').textContent()).trim();
    check(/Device approved/.test(said), `after Approve the page says "${said}"`);
    await screenshot(page, shots, 'device-approved-phone.png');

    w.clean();
    console.log(`ok: approved ${userCode} as "${deviceName}" (Approve and Deny both ${a.width.toFixed(0)}x${a.height.toFixed(0)})`);
  });
}

await main(run);
