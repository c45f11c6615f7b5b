// Passkeys in a real headless Chromium, with the DevTools virtual authenticator (CDP
// `WebAuthn.addVirtualAuthenticator`: CTAP2, internal, resident keys, user verification):
// sign in with the password, add a passkey on /account, ask for step-up on approvals, log out,
// sign in again with "Sign in with a passkey" (no e-mail, no password) and by autofill, then
// approve a QR login
// on /q/<id> whose Approve first asks for the passkey.
//
//   BASE=http://localhost:8080 EMAIL=… PASSWORD=… [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM=/usr/bin/chromium] node e2e/passkey.mjs
//
//   Prints `SIGNED_IN_WITH_PASSKEY` once back on /account through the passkey, then reads one
//   line on stdin: `<QR url> <number>` of a QR login the caller started (after letting the
//   sign-in's own assertion grow stale). It opens the URL, taps the number, lets the page do the
//   step-up, checks the approval went through and prints `APPROVED`. Then it reads a device
//   grant's verification_uri_complete, approves it on /device with a step-up and prints
//   `DEVICE_APPROVED`; shows a code on /pair, prints `PAIR_CODE=<code>`, waits for the caller to
//   redeem it, allows it with a step-up and prints `PAIR_APPROVED`. Last, a browser without
//   WebAuthn signs in with the password on a /login that offers no passkey: `FALLBACK_OK`.
//
// BASE must be a host name (localhost), not an IP address: WebAuthn refuses IP addresses.
// Exits 0 when every check holds; otherwise prints `FAILED: <why>` and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import { env, check, checkCsp, screenshot, watchedPage, waitInPage, text, baseUrl, screenshotDir, withBrowser, main, readLine, DESKTOP } from './lib.mjs';

const CALLER_TIMEOUT_MS = 30_000;

main(async () => {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const shots = await screenshotDir();
  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const w = await watchedPage(context);
    const { page } = w;
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    // Autofill stays off until step 5 turns it on (see there).
    await context.addInitScript(() => {
      if (window.PublicKeyCredential && localStorage.getItem('autofill') !== 'on') {
        PublicKeyCredential.isConditionalMediationAvailable = async () => false;
      }
    });
    const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;

    // 1. Signed in with the password, /account offers to add a passkey.
    const login = await page.goto(`${base}/login`);
    checkCsp(login, 'GET /login');
    const passkeyButton = page.getByRole('button', { name: 'Sign in with a passkey' });
    await passkeyButton.waitFor({ state: 'visible', timeout: 5_000 }).catch(() => check(false, 'no visible "Sign in with a passkey" on /login'));
    await w.signIn(email, password, '/account', 'password sign-in');
    const add = page.locator('#passkey-add');
    await add.waitFor({ state: 'visible', timeout: 5_000 }).catch(() => check(false, 'no "Add a passkey" form on /account'));
    check((await page.locator('li.passkey').count()) === 0, '/account lists a passkey before one was added');

    // 2. Add one: the authenticator makes a discoverable credential, the page reloads with it.
    await page.getByLabel('Name (optional)').fill('This laptop');
    await Promise.all([page.waitForEvent('load'), add.getByRole('button', { name: 'Add a passkey' }).click()]).catch(async () => {
      check(false, `adding a passkey did not reload /account: ${await text(add)}`);
    });
    const item = page.locator('li.passkey');
    check((await item.count()) === 1, `after adding, /account lists ${await item.count()} passkeys`);
    check((await text(item.locator('.passkey-name'))) === 'This laptop', `the passkey is called "${await text(item.locator('.passkey-name'))}"`);
    check(/never used/.test(await text(item)), `a new passkey should say "never used": ${await text(item)}`);
    const made = await credentials();
    check(made.length === 1 && made[0].isResidentCredential, `the authenticator holds ${JSON.stringify(made.map((c) => c.isResidentCredential))}`);
    await screenshot(page.locator('ul.passkeys'), shots, 'account-passkeys.png');

    // 3. Ask for a passkey before approving new devices.
    await w.clickAndLand(page.getByRole('button', { name: 'Ask for a passkey before approving a new device' }), '/account', 'step-up choice');
    check(await page.getByRole('button', { name: 'Stop asking for a passkey before approving a new device' }).isVisible(), 'the choice did not stick');

    // 4. Log out, then in again with the passkey alone, by the button. (Chromium's virtual
    // authenticator answers the page's autofill request at once, so autofill is hidden from
    // the page until step 5.)
    await w.clickAndLand(page.getByRole('button', { name: 'Log out', exact: true }), '/login', 'log out');
    await passkeyButton.waitFor({ state: 'visible' });
    await Promise.all([page.waitForURL(`${base}/account`, { timeout: 15_000 }), passkeyButton.click()]).catch(async () => {
      const err = await page.locator('.passkey-error').textContent({ timeout: 500 }).catch(() => null);
      check(false, `the passkey button did not sign in to /account (at ${page.url()}${err ? `, saying "${err}"` : ''})`);
    });
    const signedInAs = await text(page.locator('main > p').first());
    check(signedInAs.includes(email), `/account after the passkey sign-in says "${signedInAs}"`);
    check(/last used/.test(await text(page.locator('li.passkey'))), 'the passkey does not show its use');

    // 5. Autofill (conditional mediation): log out, and /login signs in with the passkey the
    // browser offers in the e-mail field, no click on the button.
    await page.evaluate(() => localStorage.setItem('autofill', 'on'));
    const beforeLogout = w.navs.length;
    await Promise.all([page.waitForURL(`${base}/login`, { waitUntil: 'commit' }), page.getByRole('button', { name: 'Log out', exact: true }).click()]);
    await page.waitForURL(`${base}/account`, { timeout: 15_000 })
      .catch(() => check(false, `autofill did not sign in from /login (at ${page.url()}; navigations: ${w.history(beforeLogout)})`));
    await page.waitForLoadState('load');
    check(await page.locator('li.passkey').isVisible(), `after autofill /account shows no passkey: ${w.history(beforeLogout)}`);
    console.log('SIGNED_IN_WITH_PASSKEY');

    // 6. A QR login from another computer: Approve asks for the passkey first.
    const [qrUrl, number] = (await readLine(CALLER_TIMEOUT_MS, 'no QR login', 'the QR login')).trim().split(/\s+/);
    const phone = await page.goto(qrUrl);
    check(phone && phone.status() === 200, `GET ${qrUrl} answered ${phone && phone.status()}`);
    const form = page.locator('form[action$="/approve"]').filter({ has: page.getByRole('button', { name: `The browser shows ${number}: approve` }) });
    check((await form.count()) === 1, `no Approve form for ${number} on ${qrUrl}: ${await text(page.locator("main"))}`);
    check((await form.getAttribute('data-step-up')) === 'yes', 'the Approve form does not ask for a passkey first');
    await Promise.all([page.waitForEvent('load'), form.getByRole('button').click()]);
    const said = await text(page.locator('main'));
    await waitInPage(page, () => !document.querySelector('.passkey-error'), null, 1_000, async () => `step-up failed: ${said}`);
    check(/approved|signed in/i.test(said) && !/passkey assertion/.test(said), `after Approve the page says "${said}"`);
    await screenshot(page, shots, 'qr-approved-with-passkey.png');
    console.log('APPROVED');

    // 7. A device code on /device: after Continue, Approve asks for the passkey first.
    const link = (await readLine(CALLER_TIMEOUT_MS, 'no device code', 'the device link')).trim();
    await page.goto(link);
    await w.clickAndLand(page.getByRole('button', { name: 'Continue' }), '/device', 'submitting the code');
    const decision = page.locator('form[action="/device/decision"]');
    check((await decision.getAttribute('data-step-up')) === 'yes', 'the /device Approve form does not ask for a passkey first');
    const stepUps = () => w.requests.filter((u) => u.endsWith('/passkeys/step-up/finish')).length;
    const before = stepUps();
    await w.clickAndLand(page.getByRole('button', { name: 'Approve', exact: true }), '/device/decision', 'approving the device code');
    check(stepUps() === before + 1, `approving on /device made ${stepUps() - before} step-ups`);
    check(/approved|signed in|allowed/i.test(await text(page.locator('main'))), `after Approve /device says "${await text(page.locator('main'))}"`);
    console.log('DEVICE_APPROVED');

    // 8. A pairing code on /pair: Allow asks for the passkey first.
    await page.goto(`${base}/pair`);
    await w.clickAndLand(page.getByRole('button', { name: 'Show a pairing code' }), '/pair', 'asking for a pairing code');
    console.log(`PAIR_CODE=${(await page.locator('#code').textContent()).trim()}`);
    const allow = page.locator('#status form[data-step-up="yes"]').getByRole('button', { name: 'Allow', exact: true });
    await allow.waitFor({ state: 'visible', timeout: CALLER_TIMEOUT_MS }).catch(() => check(false, 'nobody joined, or Allow does not ask for a passkey'));
    const id = await page.locator('#pairing').getAttribute('data-id');
    const beforePair = stepUps();
    await w.clickAndLand(allow, `/pair/${id}/approve`, 'allowing the paired device');
    check(stepUps() === beforePair + 1, `allowing on /pair made ${stepUps() - beforePair} step-ups`);
    check(/Device allowed/.test(await text(page.locator('main'))), `after Allow /pair says "${await text(page.locator('main'))}"`);
    w.clean();
    console.log('PAIR_APPROVED');
  });

  // 9. A browser without WebAuthn: /login hides the passkey button and the password still works.
  await withBrowser(async (browser) => {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addInitScript(() => {
      delete window.PublicKeyCredential;
    });
    const w = await watchedPage(context);
    const { page } = w;
    await page.goto(`${base}/login`);
    check(await page.evaluate(() => typeof window.PublicKeyCredential === 'undefined'), 'PublicKeyCredential is still there');
    check(await page.locator('#passkey-login').isHidden(), 'a browser without WebAuthn is offered "Sign in with a passkey"');
    await w.signIn(email, password, '/account', 'password sign-in without WebAuthn');
    check(await page.locator('#passkey-add').isHidden(), '/account offers to add a passkey to a browser without WebAuthn');
    check((await page.locator('li.passkey').count()) === 1, 'the passkeys of the account are still listed');
    w.clean();
    console.log('FALLBACK_OK');
  });
});
