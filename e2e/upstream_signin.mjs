// A real headless-Chromium walk through "Sign in with …" an upstream OpenID Connect provider
// (the "Corp" issuer of e2e/upstream.mjs), in two fresh browsers:
//
//   A. /login → "Sign in with Corp" → the upstream's login page → back on /account, signed in
//      to the account that sign-in created; its one identity cannot be unlinked (409: the
//      account's only way in), and is still listed afterwards. Prints `ACCOUNT_A_OK`.
//   B. /login with a local account's password → /account with "No linked sign-ins." → "Link
//      Corp" → the upstream's login page as another upstream user → back on /account with the
//      identity listed → Unlink → gone, and "Link Corp" offered again. Prints `ACCOUNT_B_OK`.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… UPSTREAM_LOGIN=carol UPSTREAM_LOGIN_B=alice \
//     UPSTREAM_NAME=Corp [UPSTREAM_ID=corp] [UPSTREAM_PASSWORD=upstream-pw] \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node e2e/upstream_signin.mjs
//
// Latchkey must have the upstream configured with auto_create on, and EMAIL/PASSWORD a local
// account whose address is neither upstream user's. UPSTREAM_LOGIN must not be linked to any
// account yet (its sign-in creates one); UPSTREAM_LOGIN_B must not be linked either. Exits 0
// when every check holds; otherwise prints why and exits 1. Uses Debian's Chromium; never
// downloads a browser.

import {
  env, check, checkCsp, horizontalOverflow, screenshot, watchedPage, box, text, baseUrl, screenshotDir, withBrowser, main, DESKTOP, PHONE,
} from './lib.mjs';

const step = (s) => console.log(`step: ${s}`);
const LAST_WAY_IN = "This is the account's only way to sign in: set a password or link another sign-in before removing it";

async function run() {
  const base = baseUrl();
  const origin = new URL(base).origin;
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const loginA = env('UPSTREAM_LOGIN');
  const loginB = env('UPSTREAM_LOGIN_B');
  const name = env('UPSTREAM_NAME');
  const id = env('UPSTREAM_ID', 'corp');
  const upstreamPassword = env('UPSTREAM_PASSWORD', 'upstream-pw');
  const shots = await screenshotDir();
  check(loginA !== loginB, `UPSTREAM_LOGIN and UPSTREAM_LOGIN_B are both ${loginA}`);
  // Plain-http loopback: the server drops the __Host- prefix and the Secure flag.
  const secure = base.startsWith('https:');
  const names = { session: secure ? '__Host-lk_session' : 'lk_session', upstream: secure ? '__Host-lk_upstream' : 'lk_upstream' };
  const callbackPath = `/login/upstream/${id}/callback`;
  /** The upstream's origin, learnt when the browser first lands on its login page. */
  let upstreamOrigin = null;

  await withBrowser(async (browser) => {
    /** A fresh browser context (no cookies: no Latchkey session, no upstream session). */
    const fresh = async (viewport = DESKTOP) => {
      const context = await browser.newContext({ viewport });
      const w = await watchedPage(context);
      w.cookie = async (n) => (await context.cookies(base)).find((c) => c.name === n);
      return { context, w };
    };

    /** The identities listed on /account, as `{ id, upstream, name, text }`. */
    const identities = (page) => page.$$eval('ul.identities > li.identity', (els) => els.map((e) => ({
      id: e.dataset.identityId,
      upstream: e.dataset.upstream,
      name: e.querySelector('strong')?.textContent.trim() ?? '',
      text: e.textContent.replace(/\s+/g, ' ').trim(),
    })));
    const linkButton = (page) => page.locator('button.link-upstream').filter({ hasText: new RegExp(`^\\s*Link ${name}\\s*$`) });

    /** Checks a /account response and page: 200, strict CSP that lets forms go on to the upstream. */
    const checkAccount = async (w, response, what) => {
      check(response.status() === 200, `${what}: GET /account answered ${response.status()}`);
      check(new URL(w.page.url()).origin === origin, `${what}: /account is at ${w.page.url()}, not on ${origin}`);
      checkCsp(response, `${what}: GET /account`);
      const csp = response.headers()['content-security-policy'];
      const formAction = /(?:^|;)\s*form-action\s+([^;]*)/.exec(csp)?.[1] ?? '';
      check(formAction.split(/\s+/).includes("'self'"), `${what}: /account's CSP form-action lacks 'self': ${csp}`);
      if (upstreamOrigin) {
        check(formAction.split(/\s+/).some((s) => s.replace(/\/+$/, '') === upstreamOrigin),
          `${what}: /account's CSP form-action does not name the upstream ${upstreamOrigin}: ${csp}`);
      }
      const session = await w.cookie(names.session);
      check(session, `${what}: no ${names.session} cookie on /account`);
      check(session.httpOnly, `${what}: ${names.session} is readable by scripts`);
      const h2 = await w.page.locator('h2', { hasText: /^\s*Ways to sign in\s*$/ }).count();
      check(h2 === 1, `${what}: /account has ${h2} "Ways to sign in" headings, not 1`);
    };

    /**
     * Clicks `button` and waits for the next document; a click that loads nothing (a form the
     * page's CSP blocks, say) fails with what the page reported instead of a bare timeout.
     */
    const clickAndLoad = async (w, button, what) => {
      const seen = w.navs.length;
      await Promise.all([w.page.waitForEvent('load'), button.click()]).catch((e) => {
        if (!(e instanceof Error) || !/Timeout/i.test(e.message)) throw e;
        check(false, `${what}: no page loaded after the click (still at ${w.page.url()}); ` +
          `CSP violations: ${JSON.stringify(w.cspViolations)}; script errors: ${JSON.stringify(w.pageErrors)}; navigations: ${w.history(seen)}`);
      });
      return seen;
    };

    /**
     * Clicks `button`, which sends the browser to the upstream; checks it lands on the upstream's
     * login form (not signed in there yet) with Latchkey's state cookie set.
     */
    const toUpstream = async (w, button, what) => {
      const { page } = w;
      const seen = await clickAndLoad(w, button, what);
      const at = new URL(page.url());
      check(at.origin !== origin, `${what}: the browser stayed on Latchkey at ${page.url()}; navigations: ${w.history(seen)}`);
      check(/^\/interaction\/[A-Za-z0-9_-]+$/.test(at.pathname),
        `${what}: the upstream shows ${page.url()}, not its login page; navigations: ${w.history(seen)}`);
      if (upstreamOrigin) check(at.origin === upstreamOrigin, `${what}: went to ${at.origin}, not the upstream ${upstreamOrigin}`);
      upstreamOrigin = at.origin;
      const started = w.navs.slice(seen).find((r) => new URL(r.url()).origin === origin);
      check(started && started.status() === 303, `${what}: Latchkey did not answer 303 on the way out; navigations: ${w.history(seen)}`);
      const auth = w.navs.slice(seen).find((r) => new URL(r.url()).origin === upstreamOrigin && new URL(r.url()).pathname === '/auth');
      check(auth, `${what}: the browser never reached the upstream's /auth; navigations: ${w.history(seen)}`);
      const q = new URL(auth.url()).searchParams;
      check(q.get('response_type') === 'code', `${what}: response_type=${q.get('response_type')}, not code`);
      check(q.get('code_challenge_method') === 'S256' && q.get('code_challenge'), `${what}: no S256 PKCE challenge in ${auth.url()}`);
      check(q.get('state') && q.get('nonce'), `${what}: no state or nonce in ${auth.url()}`);
      check(q.get('redirect_uri') === `${origin}${callbackPath}`, `${what}: redirect_uri=${q.get('redirect_uri')}, not ${origin}${callbackPath}`);
      check((q.get('scope') ?? '').split(' ').includes('openid'), `${what}: scope=${q.get('scope')} lacks openid`);
      const state = await w.cookie(names.upstream);
      check(state, `${what}: no ${names.upstream} state cookie after leaving for the upstream`);
      check(state.httpOnly, `${what}: ${names.upstream} is readable by scripts`);
      for (const sel of ['#login', '#password', '#submit', '#cancel']) {
        check((await page.locator(sel).count()) === 1, `${what}: the upstream login page has no ${sel}`);
      }
      return at;
    };

    /** Signs in on the upstream's login page and comes back through the callback to /account. */
    const signInUpstream = async (w, login, what) => {
      const { page } = w;
      await page.locator('#login').fill(login);
      await page.locator('#password').fill(upstreamPassword);
      const seen = w.navs.length;
      const account = await w.clickAndLand(page.locator('#submit'), '/account', what);
      const cb = w.navs.slice(seen).find((r) => new URL(r.url()).pathname === callbackPath);
      check(cb, `${what}: the browser never came back through ${callbackPath}; navigations: ${w.history(seen)}`);
      check(new URL(cb.url()).origin === origin, `${what}: the callback was at ${cb.url()}, not on ${origin}`);
      check(cb.status() === 303, `${what}: ${callbackPath} answered ${cb.status()}, not 303; navigations: ${w.history(seen)}`);
      const cq = new URL(cb.url()).searchParams;
      check(cq.get('code') && cq.get('state'), `${what}: the callback carried no code or state: ${cb.url()}`);
      check(cq.get('iss') === upstreamOrigin, `${what}: the callback's iss is ${cq.get('iss')}, not ${upstreamOrigin}`);
      check(!(await w.cookie(names.upstream))?.value, `${what}: the ${names.upstream} state cookie outlived the callback`);
      return account;
    };

    // ---- A. A new account through the upstream; its only way in stays. ------------------------
    {
      const { context, w } = await fresh();
      const { page } = w;

      step('A: /login offers the upstream');
      const login = await page.goto(`${base}/login`);
      check(login && login.status() === 200, `A: GET /login answered ${login?.status()}`);
      checkCsp(login, 'A: GET /login');
      check((await page.title()).includes('Sign in'), `A: GET /login has the title "${await page.title()}"`);
      const link = page.getByRole('link', { name: `Sign in with ${name}`, exact: true });
      const links = await link.count();
      const all = await page.$$eval('a.upstream', (els) => els.map((e) => e.textContent.trim()));
      check(links === 1, `A: /login has ${links} "Sign in with ${name}" links, not 1; upstream links: ${JSON.stringify(all)}`);
      check(await link.evaluate((e) => e.classList.contains('upstream') && e.classList.contains('button')),
        `A: "Sign in with ${name}" is not an a.button.upstream`);
      const href = new URL(await link.getAttribute('href'), base);
      check(href.origin === origin && href.pathname === `/login/upstream/${id}`, `A: "Sign in with ${name}" points at ${href}, not /login/upstream/${id}`);
      check(href.searchParams.get('next') === '/account', `A: "Sign in with ${name}" carries next=${JSON.stringify(href.searchParams.get('next'))}, not /account`);
      check(await link.isVisible(), `A: "Sign in with ${name}" is not visible`);
      await screenshot(page, shots, 'upstream-login-desktop.png');
      const wideDesktop = await horizontalOverflow(page);
      check(!wideDesktop, `A: /login on ${DESKTOP.width}x${DESKTOP.height} scrolls sideways: ${wideDesktop}`);

      // The same page on a phone: nothing sideways, the link big enough to hit.
      await page.setViewportSize(PHONE);
      await page.reload();
      await screenshot(page, shots, 'upstream-login-phone.png');
      const widePhone = await horizontalOverflow(page);
      check(!widePhone, `A: /login on ${PHONE.width}x${PHONE.height} scrolls sideways: ${widePhone}`);
      const lb = await link.boundingBox();
      check(lb && lb.height >= 44, `A: "Sign in with ${name}" on a phone is ${lb ? box(lb) : 'invisible'}, below a 44px touch target`);
      check(lb.x >= 0 && lb.x + lb.width <= PHONE.width, `A: "Sign in with ${name}" on a phone is ${box(lb)}, outside the ${PHONE.width}px screen`);
      await page.setViewportSize(DESKTOP);

      step(`A: "Sign in with ${name}" → the upstream`);
      const at = await toUpstream(w, link, `A: clicking "Sign in with ${name}"`);
      step(`A: on the upstream's login page ${at.origin}${at.pathname}`);
      await screenshot(page, shots, 'upstream-idp-login-a.png');

      step(`A: signing in upstream as ${loginA}`);
      const account = await signInUpstream(w, loginA, `A: signing in upstream as ${loginA}`);
      await checkAccount(w, account, 'A');
      const ids = await identities(page);
      check(ids.length === 1, `A: /account lists ${ids.length} identities, not 1: ${JSON.stringify(ids)}`);
      const [mine] = ids;
      check(mine.upstream === id, `A: the identity has data-upstream=${JSON.stringify(mine.upstream)}, not ${id}`);
      check(mine.name === name, `A: the identity is called "${mine.name}", not "${name}"`);
      check(mine.id, 'A: the identity has no data-identity-id');
      check(/\([^()\s]+@[^()\s]+\)/.test(mine.text), `A: the identity shows no (e-mail): "${mine.text}"`);
      check(!(await page.getByText('No linked sign-ins.', { exact: true }).count()), 'A: /account says "No linked sign-ins." next to a linked one');
      check((await linkButton(page).count()) === 0, `A: /account offers "Link ${name}" although ${name} is linked`);
      const item = page.locator(`ul.identities > li.identity[data-identity-id="${mine.id}"]`);
      const unlink = item.getByRole('button', { name: `Unlink ${name}`, exact: true });
      check((await unlink.count()) === 1, `A: the identity has ${await unlink.count()} "Unlink ${name}" buttons, not 1`);
      check(await unlink.evaluate((e) => e.classList.contains('danger')), `A: "Unlink ${name}" is not a button.danger`);
      const action = await unlink.evaluate((e) => e.form?.getAttribute('action'));
      check(action === `/account/identities/${mine.id}/unlink`, `A: "Unlink ${name}" posts to ${action}`);
      step(`A: signed in to a new account with ${mine.text}`);
      await screenshot(page, shots, 'upstream-account-a-desktop.png');
      await page.setViewportSize(PHONE);
      await screenshot(page, shots, 'upstream-account-a-phone.png');
      const wideAccount = await horizontalOverflow(page);
      check(!wideAccount, `A: /account on ${PHONE.width}x${PHONE.height} scrolls sideways: ${wideAccount}`);
      await page.setViewportSize(DESKTOP);

      // Unlink the only way in: refused with a 409 page, the identity stays.
      step(`A: "Unlink ${name}" on the only way in`);
      const seen = await clickAndLoad(w, unlink, `A: unlinking the only way in`);
      const refusedAt = new URL(page.url());
      check(refusedAt.origin === origin && refusedAt.pathname === action,
        `A: unlinking the only way in went to ${page.url()}, not a page at ${action}; navigations: ${w.history(seen)}`);
      const refused = w.navs.slice(seen).filter((r) => new URL(r.url()).pathname === action).pop();
      check(refused, `A: no response for ${action}; navigations: ${w.history(seen)}`);
      check(refused.status() === 409, `A: unlinking the only way in answered ${refused.status()}, not 409: "${await text(page.locator('main'))}"`);
      checkCsp(refused, `A: POST ${action}`);
      const said = await text(page.locator('main'));
      check(said.includes(LAST_WAY_IN), `A: the 409 page does not explain why: "${said}"`);
      step(`A: refused, ${refused.status()}: "${said}"`);
      await screenshot(page, shots, 'upstream-unlink-refused.png');

      const again = await page.goto(`${base}/account`);
      await checkAccount(w, again, 'A: after the refused unlink');
      const still = await identities(page);
      check(still.length === 1 && still[0].id === mine.id && still[0].upstream === id,
        `A: after the refused unlink /account lists ${JSON.stringify(still)}, not the one ${id} identity ${mine.id}`);
      check(still[0].text === mine.text, `A: the identity reads "${still[0].text}" after the refused unlink, not "${mine.text}"`);
      step('A: the identity is still listed');

      w.clean();
      await context.close();
      console.log('ACCOUNT_A_OK');
    }

    // ---- B. A local account links the upstream, then unlinks it. -------------------------------
    {
      const { context, w } = await fresh();
      const { page } = w;

      step(`B: signing in with the password of ${email}`);
      const login = await page.goto(`${base}/login`);
      check(login && login.status() === 200, `B: GET /login answered ${login?.status()}`);
      checkCsp(login, 'B: GET /login');
      const account = await w.signIn(email, password, '/account', 'B: signing in with a password');
      await checkAccount(w, account, 'B');
      const body = await text(page.locator('main'));
      check(body.includes(email), `B: /account does not say who is signed in (${email})`);
      const none = await identities(page);
      check(none.length === 0, `B: a fresh local account lists identities: ${JSON.stringify(none)}`);
      check((await page.getByText('No linked sign-ins.', { exact: true }).count()) === 1, 'B: /account does not say "No linked sign-ins."');
      const link = linkButton(page);
      check((await link.count()) === 1, `B: /account has ${await link.count()} "Link ${name}" buttons, not 1`);
      const linkAction = await link.evaluate((e) => e.form?.getAttribute('action'));
      check(linkAction === `/account/identities/link/${id}`, `B: "Link ${name}" posts to ${linkAction}`);
      await screenshot(page, shots, 'upstream-account-b-unlinked.png');

      step(`B: "Link ${name}" → the upstream`);
      await toUpstream(w, link, `B: clicking "Link ${name}"`);
      await screenshot(page, shots, 'upstream-idp-login-b.png');

      step(`B: signing in upstream as ${loginB}`);
      const linked = await signInUpstream(w, loginB, `B: signing in upstream as ${loginB} to link`);
      await checkAccount(w, linked, 'B: after linking');
      const after = await text(page.locator('main'));
      check(after.includes(email), `B: after linking /account is no longer ${email}'s`);
      const ids = await identities(page);
      check(ids.length === 1, `B: after linking /account lists ${ids.length} identities, not 1: ${JSON.stringify(ids)}`);
      const [mine] = ids;
      check(mine.upstream === id, `B: the identity has data-upstream=${JSON.stringify(mine.upstream)}, not ${id}`);
      check(mine.name === name, `B: the identity is called "${mine.name}", not "${name}"`);
      check(!(await page.getByText('No linked sign-ins.', { exact: true }).count()), 'B: /account still says "No linked sign-ins." after linking');
      check((await linkButton(page).count()) === 0, `B: /account still offers "Link ${name}" after linking`);
      step(`B: linked ${mine.text}`);
      await screenshot(page, shots, 'upstream-account-b-linked.png');

      step(`B: "Unlink ${name}"`);
      const item = page.locator(`ul.identities > li.identity[data-identity-id="${mine.id}"]`);
      const unlink = item.getByRole('button', { name: `Unlink ${name}`, exact: true });
      check((await unlink.count()) === 1, `B: the identity has ${await unlink.count()} "Unlink ${name}" buttons, not 1`);
      const back = await w.clickAndLand(unlink, '/account', `B: unlinking ${name}`);
      await checkAccount(w, back, 'B: after unlinking');
      const gone = await identities(page);
      check(gone.length === 0, `B: after unlinking /account still lists ${JSON.stringify(gone)}`);
      check((await page.getByText('No linked sign-ins.', { exact: true }).count()) === 1, 'B: /account does not say "No linked sign-ins." after unlinking');
      check((await linkButton(page).count()) === 1, `B: /account does not offer "Link ${name}" again after unlinking`);
      check((await text(page.locator('main'))).includes(email), `B: after unlinking /account is no longer ${email}'s`);
      step(`B: unlinked; "Link ${name}" is back`);
      await screenshot(page, shots, 'upstream-account-b-after-unlink.png');

      w.clean();
      await context.close();
      console.log('ACCOUNT_B_OK');
    }
  });
}

await main(run);
