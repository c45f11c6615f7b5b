// Headless Chromium through the pages mailed links open: "This wasn't me" from a new-device mail
// signs that device out, then "Forgot your password?" on /login asks for a reset link, the link
// (handed over on stdin once the test has read the mail) sets a new password, and /login takes it.
// The used "This wasn't me" link is refused when opened again. Last, the open /account page
// learns at once that its device was revoked elsewhere.
//
//   BASE=… WASNT_ME_LINK=… INTRUDER_NAME=… EMAIL=… NEW_PASSWORD=… node e2e/mail_links.mjs
//   (prints RESET_ASKED, then reads the reset link on stdin; prints ACCOUNT_OPEN, then reads a line
//   once the caller has revoked this browser's device, and checks the open page learns it)
//
// Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs.

import { env, check, checkCsp, screenshot, watchedPage, baseUrl, screenshotDir, withBrowser, main, readLine, DESKTOP } from './lib.mjs';

async function run() {
  const base = baseUrl();
  const [link, intruder, email, password] = [env('WASNT_ME_LINK'), env('INTRUDER_NAME'), env('EMAIL'), env('NEW_PASSWORD')];
  const shots = await screenshotDir();

  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const w = await watchedPage(context);
    const { page } = w;

    // 1. The link from the mail: the device, and one button; opening it changes nothing.
    const opened = await page.goto(link);
    check(opened && opened.status() === 200, `GET the "This wasn't me" link answered ${opened?.status()}`);
    checkCsp(opened, 'the "This wasn\'t me" page');
    check((await page.title()).includes('Was this you?'), `its title is "${await page.title()}"`);
    const facts = await page.locator('#wasnt-me-facts').textContent();
    check(facts.includes(intruder), `the page does not name the device "${intruder}": ${facts}`);
    await screenshot(page, shots, 'wasnt-me.png');
    const path = new URL(link).pathname;
    await w.clickAndLand(page.getByRole('button', { name: /This wasn't me/ }), path, 'clicking "This wasn\'t me"');
    const heading = await page.locator('h1').textContent();
    check(heading.includes('That device is signed out'), `after the click the page says "${heading}"`);
    check(
      (await page.getByRole('link', { name: 'reset it by e-mail' }).count()) === 1,
      'the signed-out page does not offer a password reset',
    );
    await screenshot(page, shots, 'wasnt-me-done.png');
    // The link works once: opened again, it is refused and offers nothing to press.
    const replayed = await page.goto(link);
    check(replayed && replayed.status() >= 400 && replayed.status() < 500, `the used link answered ${replayed?.status()} the second time`);
    check((await page.getByRole('button', { name: /This wasn't me/ }).count()) === 0, 'the used link still offers "This wasn\'t me"');

    // 2. "Forgot your password?" from /login.
    await page.goto(`${base}/login`);
    await w.clickAndLand(page.getByRole('link', { name: 'Forgot your password?' }), '/forgot-password', 'following "Forgot your password?"');
    await page.getByLabel('E-mail').fill(email);
    await w.clickAndLand(page.getByRole('button', { name: 'Mail me a link' }), '/forgot-password', 'asking for a reset link');
    const sent = await page.locator('main').textContent();
    check(sent.includes('If an account has this address'), `after asking, the page says: ${sent}`);
    console.log('RESET_ASKED');
    const reset = (await readLine(30_000, 'no reset link', 'the reset link')).trim();

    // 3. The reset link: a new password, and every device signed out.
    const r = await page.goto(reset);
    check(r && r.status() === 200, `GET the reset link answered ${r?.status()}`);
    checkCsp(r, 'the reset page');
    await page.getByLabel('New password').fill(password);
    await screenshot(page, shots, 'reset-password.png');
    await w.clickAndLand(page.getByRole('button', { name: 'Set the new password' }), new URL(reset).pathname, 'setting the new password');
    const changed = await page.locator('main').textContent();
    check(changed.includes('Your password is changed'), `after the reset the page says: ${changed}`);

    // 4. The new password signs in, and the disowned device is gone from the list.
    await page.goto(`${base}/login`);
    await w.signIn(email, password, '/account', 'signing in with the new password');
    const names = await page.$$eval('li.device .device-name', (els) => els.map((e) => e.textContent.trim()));
    check(!names.includes(intruder), `"${intruder}" is still listed on /account: ${JSON.stringify(names)}`);

    // 5. This browser is revoked from another device while /account is open: the page says so
    // at once (its live socket) and its buttons stop.
    console.log('ACCOUNT_OPEN');
    await readLine(30_000, 'no word of the revocation', 'the revocation');
    await page.locator('#signed-out').waitFor({ state: 'visible', timeout: 5_000 })
      .catch(() => check(false, 'the open /account page was not told that its device was signed out'));
    check(/signed out/.test(await page.locator('#signed-out').textContent()), 'the notice does not say "signed out"');
    const live = await page.locator('main form button:not([disabled])').count();
    check(live === 0, `${live} buttons still work on a signed-out page`);
    await screenshot(page, shots, 'account-signed-out.png');
    w.clean();
    console.log('OK mail links');
  });
}

main(run);
