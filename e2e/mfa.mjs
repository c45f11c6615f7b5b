// A real headless-Chromium walk through "remember this device" on a phone-sized screen: sign in
// at /login with a password, land on /mfa (no session yet), type the authenticator code with
// "Remember this device" ticked, land on /account with an HttpOnly trust cookie, log out, and
// sign in again: straight to /account, with no second factor asked.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… [SCREENSHOT_DIR=/tmp/shots] \
//     [REMEMBER_DAYS=30] [CHROMIUM=/usr/bin/chromium] node e2e/mfa.mjs
//
// Handshake: on /mfa the script prints `NEED_TOTP` and waits for one line on stdin, the current
// six-digit code of the account's authenticator (the caller holds the TOTP secret). Exits 0 when
// every check holds; otherwise prints why and exits 1. Run by crates/latchkey/tests/pages.rs.
// Uses Debian's Chromium; never downloads a browser.

import {
  env, check, checkCsp, horizontalOverflow, screenshot, readLine, watchedPage, box, baseUrl, screenshotDir, withBrowser, main, PHONE,
} from './lib.mjs';

const DAY = 86_400;

const step = (text) => console.log(`step: ${text}`);

async function run() {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const rememberDays = Number(env('REMEMBER_DAYS', '30'));
  const shots = await screenshotDir();
  // Plain-http loopback: the server drops the __Host- prefix and the Secure flag.
  const secure = base.startsWith('https:');
  const names = {
    session: secure ? '__Host-lk_session' : 'lk_session',
    mfa: secure ? '__Host-lk_mfa' : 'lk_mfa',
    trust: secure ? '__Host-lk_trust' : 'lk_trust',
  };

  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: PHONE });
    const w = await watchedPage(context);
    const { page, navs, history } = w;
    const cookie = async (name) => (await context.cookies(base)).find((c) => c.name === name);
    /** Signs in from /login; returns the landing response and how many navigations came before the click. */
    const signIn = async (pathname, what) => {
      const login = await page.goto(`${base}/login`);
      check(login && login.status() === 200, `${what}: GET /login answered ${login?.status()}`);
      const seen = navs.length;
      const landed = await w.signIn(email, password, pathname, what);
      return { landed, seen };
    };

    // 1. Password: the account has TOTP on, so the browser is sent on to /mfa, not signed in.
    step('sign in with the password');
    const { landed: mfa } = await signIn('/mfa', 'signing in with a password');
    check(mfa.status() === 200, `GET /mfa answered ${mfa.status()}`);
    checkCsp(mfa, 'GET /mfa');
    const atMfa = new URL(page.url());
    check(atMfa.searchParams.get('next') === '/account', `/mfa would go on to ${JSON.stringify(atMfa.searchParams.get('next'))}, not /account`);
    const h1 = (await page.locator('h1').textContent()).trim();
    check(h1 === 'One more step', `/mfa's heading is "${h1}"`);
    const rememberText = `Remember this device for ${rememberDays} days`;
    const remember = page.getByLabel(rememberText, { exact: true });
    check((await remember.count()) === 1, `/mfa has ${await remember.count()} "${rememberText}" checkboxes, not 1`);
    check((await remember.getAttribute('type')) === 'checkbox', `"${rememberText}" is not a checkbox`);
    check(!(await remember.isChecked()), `"${rememberText}" is ticked before anyone ticked it`);
    const codeBox = page.getByLabel('Code from your authenticator app');
    check((await codeBox.count()) === 1, '/mfa has no "Code from your authenticator app" box');
    check((await codeBox.getAttribute('autocomplete')) === 'one-time-code', 'the code box lacks autocomplete=one-time-code');
    check((await codeBox.getAttribute('inputmode')) === 'numeric', 'the code box does not ask phones for a number pad');
    step(`on ${atMfa.pathname}${atMfa.search} with "${rememberText}" unticked`);

    // Half signed in is not signed in: no session cookie, and /account sends the browser to /login.
    check(!(await cookie(names.session)), `a ${names.session} cookie exists before the second factor`);
    const pending = await cookie(names.mfa);
    check(pending, `no ${names.mfa} cookie holds the pending second step`);
    check(pending.httpOnly, `${names.mfa} is readable by scripts`);
    check(!(await cookie(names.trust)), `a ${names.trust} cookie exists before anything was remembered`);
    const probe = await context.newPage();
    await probe.goto(`${base}/account`);
    const probed = new URL(probe.url());
    check(probed.pathname === '/login', `/account before the second factor shows ${probe.url()}, not /login`);
    await probe.close();
    step('no session yet: /account redirects to /login');

    // Phone layout: nothing sideways, the checkbox and buttons big enough to hit.
    const wide = await horizontalOverflow(page);
    check(!wide, `/mfa on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wide}`);
    const rememberRow = page.locator('label.check', { hasText: rememberText });
    const row = await rememberRow.boundingBox();
    check(row && row.height >= 44, `the "${rememberText}" row is ${row ? box(row) : 'invisible'}, below a 44px touch target`);
    const tick = await remember.boundingBox();
    check(tick && tick.width >= 18 && tick.height >= 18, `the "${rememberText}" checkbox is ${tick ? box(tick) : 'invisible'}, hard to see on a phone`);
    const cont = page.getByRole('button', { name: 'Continue', exact: true }).first();
    const c = await cont.boundingBox();
    check(c && c.height >= 44, `Continue is ${c ? box(c) : 'invisible'}, below a 44px touch target`);
    await screenshot(page, shots, 'mfa-phone.png');
    // The recovery-code form folded out: the same checks, then folded away again.
    const recovery = page.locator('details > summary', { hasText: 'Use a recovery code' });
    check((await recovery.count()) === 1, '/mfa offers no "Use a recovery code"');
    const fold = await recovery.boundingBox();
    check(fold && fold.height >= 44, `"Use a recovery code" is ${fold ? box(fold) : 'invisible'}, below a 44px touch target`);
    await recovery.click();
    check(await page.getByLabel('Recovery code').isVisible(), '"Use a recovery code" does not fold out a Recovery code box');
    const wideRecovery = await horizontalOverflow(page);
    check(!wideRecovery, `/mfa with the recovery form open scrolls sideways: ${wideRecovery}`);
    await screenshot(page, shots, 'mfa-recovery-phone.png');
    await recovery.click();

    // 2. The second factor: the code from the caller, Remember ticked.
    console.log('NEED_TOTP');
    const code = (await readLine(30_000, 'no TOTP code', 'the TOTP code')).trim();
    check(/^\d{6}$/.test(code), `expected a six-digit code on stdin, got ${JSON.stringify(code)}`);
    await codeBox.fill(code);
    await remember.check();
    check(await remember.isChecked(), `"${rememberText}" did not tick`);
    step(`typed ${code}, ticked "${rememberText}"`);
    const account = await w.clickAndLand(cont, '/account', 'submitting the code');
    check(account.status() === 200, `GET /account after /mfa answered ${account.status()}`);
    check(await cookie(names.session), `no ${names.session} cookie after the second factor`);
    check(!(await cookie(names.mfa)), `${names.mfa} outlived the second step`);
    const trust = await cookie(names.trust);
    check(trust, `no ${names.trust} cookie after ticking "${rememberText}"`);
    check(trust.httpOnly, `${names.trust} is readable by scripts`);
    check(trust.sameSite === 'Lax' || trust.sameSite === 'Strict', `${names.trust} is SameSite=${trust.sameSite}`);
    check(trust.path === '/', `${names.trust} has path ${trust.path}`);
    const days = (trust.expires - Date.now() / 1000) / DAY;
    check(Math.abs(days - rememberDays) < 1, `${names.trust} lasts ${days.toFixed(2)} days, not ${rememberDays}`);
    check(trust.value.startsWith('lk_dt_'), `${names.trust} does not hold a device-trust token`);
    const mine = page.locator('li.device', { has: page.locator('.badge', { hasText: 'this device' }) });
    check((await mine.count()) === 1, `/account marks ${await mine.count()} devices as "this device"`);
    const mineText = (await mine.textContent()).replace(/\s+/g, ' ').trim();
    check(/Remembered for two-factor login until/.test(mineText), `/account does not show this device as remembered: ${mineText}`);
    step(`on /account with ${names.trust} (HttpOnly, ${days.toFixed(1)} days)`);
    await screenshot(page, shots, 'mfa-account-phone.png');

    // 3. Log out: the session goes, the remembered device stays.
    const out = await w.clickAndLand(page.getByRole('button', { name: 'Log out', exact: true }), '/login', 'logging out');
    check(out.status() === 200, `GET /login after logging out answered ${out.status()}`);
    check(!(await cookie(names.session)), `${names.session} outlived logging out`);
    const kept = await cookie(names.trust);
    check(kept && kept.value === trust.value, `${names.trust} did not survive logging out`);
    step(`logged out, back on /login, ${names.trust} kept`);

    // 4. Password again: straight to /account, no /mfa on the way.
    const { seen } = await signIn('/account', 'signing in on the remembered device');
    const again = history(seen);
    check(!navs.slice(seen).some((r) => new URL(r.url()).pathname === '/mfa'), `signing in again went through /mfa: ${again}`);
    check(await cookie(names.session), `no ${names.session} cookie after signing in again`);
    const rotated = await cookie(names.trust);
    check(rotated && rotated.httpOnly, `${names.trust} is gone or readable by scripts after signing in again`);
    check(rotated.value !== trust.value, `${names.trust} was not rotated when it was used`);
    const mineAgain = page.locator('li.device', { has: page.locator('.badge', { hasText: 'this device' }) });
    check((await mineAgain.count()) === 1, `/account marks ${await mineAgain.count()} devices as "this device" after signing in again`);
    step(`signed in again with no second factor: ${again}`);

    w.clean();
    console.log('ok: remembered this browser and skipped the second factor on the next sign-in');
  });
}

await main(run);
