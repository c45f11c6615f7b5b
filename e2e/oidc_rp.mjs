// An app signing its users in through Latchkey, in a real headless Chromium. The app is a tiny
// relying party started here on 127.0.0.1 (an OS-picked port) and built on panva's openid-client,
// so the other side of every check is an independent OpenID Connect implementation: discovery,
// the authorization URL (PKCE S256, state, nonce, scope `openid email`), the RFC 9207 `iss` in
// the redirect, the code exchange, the id_token's signature and claims, and userinfo.
//
//   BASE=http://127.0.0.1:8080 EMAIL=… PASSWORD=… CLIENT_ID=rp [CLIENT_NAME="Tiny RP"] \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node e2e/oidc_rp.mjs
//
// The client must be registered as public, with the loopback redirect `http://127.0.0.1/cb`
// (any port matches, RFC 8252), and the account must have TOTP on. The walk:
//   1. the app's /login sends the browser to Latchkey's /oauth/authorize, which sends it on to
//      /login; the password leads to /mfa, where the script prints `NEED_TOTP` and waits for one
//      line on stdin, the current six-digit code (the caller holds the TOTP secret); it types it
//      with "Remember this device" ticked, is asked "Let <app> sign you in?", clicks Allow and
//      lands on the app's /cb, which shows the verified claims;
//   2. it logs out of Latchkey on /account and goes through the app's /login again: the password
//      alone brings it straight back to /cb, with no second factor (the device is remembered)
//      and no consent page (the consent is remembered).
// Each time the app has the claims it prints `CLAIMS {"id_token":{…},"userinfo":{…},"scope":…}`
// on stdout. Exits 0 when every check holds; otherwise prints why and exits 1. Run by
// crates/latchkey/tests/pages.rs. Uses Debian's Chromium; never downloads a browser.

import * as oidc from 'openid-client';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  env, check, checkCsp, screenshot, readLine, watchedPage, baseUrl, screenshotDir, withBrowser, main, DESKTOP,
} from './lib.mjs';

const step = (text) => console.log(`step: ${text}`);

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const htmlPage = (status, title, body) => ({
  status,
  html: `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>` +
    `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`,
});

/**
 * The relying party: `/login` starts a sign-in, `/cb` finishes it. What it needs between the two
 * (PKCE verifier, state, nonce) stays in this process, under a random id in an HttpOnly cookie.
 * Resolves to `{ origin, close }` once it listens.
 */
async function startRp(issuer, clientId) {
  // Plain-http loopback issuer: openid-client refuses http unless told.
  const config = await oidc.discovery(new URL(issuer), clientId, undefined, oidc.None(), {
    execute: [oidc.allowInsecureRequests],
  });
  const meta = config.serverMetadata();
  check(meta.issuer === issuer, `discovery says the issuer is ${meta.issuer}, not ${issuer}`);
  check(meta.authorization_response_iss_parameter_supported === true,
    'discovery does not announce authorization_response_iss_parameter_supported (RFC 9207)');
  check(meta.supportsPKCE('S256'), `discovery lists code_challenge_methods_supported ${JSON.stringify(meta.code_challenge_methods_supported)}, without S256`);
  step(`discovered ${issuer}: authorize ${meta.authorization_endpoint}, token ${meta.token_endpoint}`);

  const flows = new Map();
  let origin;
  const COOKIE = 'rp_flow';

  const login = async () => {
    const flow = {
      verifier: oidc.randomPKCECodeVerifier(),
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
    };
    const id = randomBytes(16).toString('hex');
    flows.set(id, flow);
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: `${origin}/cb`,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    return {
      status: 302,
      headers: { location: url.href, 'set-cookie': `${COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax` },
    };
  };

  const callback = async (req, url) => {
    const id = (req.headers.cookie ?? '').split(/;\s*/).find((c) => c.startsWith(`${COOKIE}=`))?.slice(COOKIE.length + 1);
    const flow = id && flows.get(id);
    if (!flow) return htmlPage(400, 'No sign-in in progress', '<p>This browser started no sign-in here.</p>');
    flows.delete(id);
    const tokens = await oidc.authorizationCodeGrant(config, url, {
      pkceCodeVerifier: flow.verifier,
      expectedState: flow.state,
      expectedNonce: flow.nonce,
      idTokenExpected: true,
    });
    const idToken = tokens.claims();
    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, idToken.sub);
    const claims = { id_token: idToken, userinfo, scope: tokens.scope ?? null };
    const json = JSON.stringify(claims);
    console.log(`CLAIMS ${json}`);
    return htmlPage(200, 'Signed in', `<pre id="claims">${escapeHtml(JSON.stringify(claims, null, 2))}</pre>`);
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, origin);
    let answer;
    try {
      if (req.method === 'GET' && url.pathname === '/login') answer = await login();
      else if (req.method === 'GET' && url.pathname === '/cb') answer = await callback(req, url);
      else answer = htmlPage(404, 'Not found', '');
    } catch (e) {
      // What openid-client refused, shown to the driver below and printed for the test log.
      const why = `${e?.name ?? 'Error'}: ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}` +
        `${e?.cause ? ` cause: ${JSON.stringify(e.cause)}` : ''}`;
      console.log(`RP_ERROR ${url.pathname}: ${why}`);
      answer = htmlPage(400, 'Sign-in failed', `<pre id="error">${escapeHtml(why)}</pre>`);
    }
    res.writeHead(answer.status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...answer.headers });
    res.end(answer.html ?? '');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

async function run() {
  const base = baseUrl();
  const email = env('EMAIL');
  const password = env('PASSWORD');
  const clientId = env('CLIENT_ID');
  const clientName = process.env.CLIENT_NAME || null;
  const shots = await screenshotDir();
  const rp = await startRp(base, clientId);
  step(`the app listens at ${rp.origin}, client ${clientId}`);

  try {
    await withBrowser(async (browser) => {
      const context = await browser.newContext({ viewport: DESKTOP });
      const w = await watchedPage(context);
      const { page, navs, history } = w;
      const at = () => new URL(page.url());
      const pathsSince = (seen) => navs.slice(seen).map((r) => new URL(r.url()));
      /**
       * `w.clickAndLand`, with what the browser saw when it never got there: a form post that
       * redirects to the app on another origin is where a `form-action` CSP would stop it.
       */
      const land = async (button, pathname, what) => {
        const seen = navs.length;
        try {
          return await w.clickAndLand(button, pathname, what);
        } catch (e) {
          if (!(e instanceof Error) || !/Timeout/i.test(e.message)) throw e;
          check(false, `${what}: no page loaded within 15 s; the browser is at ${page.url()}; navigations: ${history(seen)}` +
            `${w.cspViolations.length ? `; CSP violations: ${w.cspViolations.join(' | ')}` : ''}`);
        }
      };

      /** `w.signIn` through `land`. */
      const signIn = async (pathname, what) => {
        await page.getByLabel('E-mail').fill(email);
        await page.getByLabel('Password').fill(password);
        return land(page.getByRole('button', { name: 'Sign in', exact: true }), pathname, what);
      };

      /** Opens the app's /login and checks the browser was sent through /oauth/authorize to Latchkey's /login. */
      const startAtApp = async (what) => {
        const seen = navs.length;
        await page.goto(`${rp.origin}/login`);
        const here = at();
        check(here.origin === base && here.pathname === '/login',
          `${what}: the app's /login led to ${page.url()}, not ${base}/login; navigations: ${history(seen)}`);
        const authorize = pathsSince(seen).find((u) => u.origin === base && u.pathname === '/oauth/authorize');
        check(authorize, `${what}: the browser never went through /oauth/authorize; navigations: ${history(seen)}`);
        const q = authorize.searchParams;
        check(q.get('client_id') === clientId && q.get('response_type') === 'code' && q.get('code_challenge_method') === 'S256' &&
          q.get('code_challenge') && q.get('state') && q.get('nonce') && q.get('redirect_uri') === `${rp.origin}/cb`,
          `${what}: openid-client asked ${authorize.search}`);
        const next = here.searchParams.get('next') ?? '';
        check(next.startsWith('/oauth/authorize?'), `${what}: /login would go on to ${JSON.stringify(next)}, not back to /oauth/authorize`);
        return seen;
      };

      /** The claims the app shows on /cb, checked against who signed in and to whom. */
      const claimsOnCb = async (landed, what) => {
        check(landed.status() === 200, `${what}: the app's /cb answered ${landed.status()}`);
        const here = at();
        check(here.origin === rp.origin, `${what}: /cb is at ${here.origin}, not the app's ${rp.origin}`);
        check(here.searchParams.get('iss') === base, `${what}: the redirect's iss is ${JSON.stringify(here.searchParams.get('iss'))}, not ${base}`);
        const failed = page.locator('#error');
        if ((await failed.count()) > 0) check(false, `${what}: the app refused the answer: ${(await failed.textContent()).trim()}`);
        const shown = page.locator('pre#claims');
        check((await shown.count()) === 1, `${what}: /cb shows no claims`);
        const claims = JSON.parse(await shown.textContent());
        const { id_token: id, userinfo } = claims;
        check(typeof id.sub === 'string' && id.sub !== '', `${what}: the id_token's sub is ${JSON.stringify(id.sub)}`);
        check(id.iss === base, `${what}: the id_token's iss is ${JSON.stringify(id.iss)}, not ${base}`);
        const aud = Array.isArray(id.aud) ? id.aud : [id.aud];
        check(aud.length === 1 && aud[0] === clientId, `${what}: the id_token's aud is ${JSON.stringify(id.aud)}, not ${clientId}`);
        check(userinfo.sub === id.sub, `${what}: userinfo's sub ${userinfo.sub} is not the id_token's ${id.sub}`);
        check(userinfo.email === email, `${what}: userinfo's email is ${JSON.stringify(userinfo.email)}, not ${email}`);
        if (id.email !== undefined) check(id.email === email, `${what}: the id_token's email is ${JSON.stringify(id.email)}, not ${email}`);
        return claims;
      };

      // 1. First time: password, second factor with the device remembered, consent, back to the app.
      step('open the app and sign in with the password');
      await startAtApp('starting at the app');
      const mfa = await signIn('/mfa', 'signing in with a password');
      check(mfa.status() === 200, `GET /mfa answered ${mfa.status()}`);
      const mfaNext = at().searchParams.get('next') ?? '';
      check(mfaNext.startsWith('/oauth/authorize?'), `/mfa would go on to ${JSON.stringify(mfaNext)}, not back to /oauth/authorize`);
      const codeBox = page.getByLabel('Code from your authenticator app');
      check((await codeBox.count()) === 1, '/mfa has no "Code from your authenticator app" box');
      const remember = page.getByLabel(/Remember this device for \d+ days/);
      check((await remember.count()) === 1, `/mfa has ${await remember.count()} "Remember this device" checkboxes, not 1`);
      step('on /mfa, on the way back to /oauth/authorize');

      console.log('NEED_TOTP');
      const code = (await readLine(30_000, 'no TOTP code', 'the TOTP code')).trim();
      check(/^\d{6}$/.test(code), `expected a six-digit code on stdin, got ${JSON.stringify(code)}`);
      await codeBox.fill(code);
      await remember.check();
      check(await remember.isChecked(), '"Remember this device" did not tick');
      step(`typed ${code}, ticked "Remember this device"`);
      const consent = await land(page.getByRole('button', { name: 'Continue', exact: true }).first(), '/oauth/authorize', 'submitting the code');
      check(consent.status() === 200, `the consent page answered ${consent.status()}`);
      checkCsp(consent, 'the consent page');
      const h1 = (await page.locator('h1').textContent()).trim();
      check(clientName ? h1 === `Let ${clientName} sign you in?` : /^Let .+ sign you in\?$/.test(h1), `the consent page asks "${h1}"`);
      const deny = page.getByRole('button', { name: 'Deny', exact: true });
      const allow = page.getByRole('button', { name: 'Allow', exact: true });
      check((await deny.count()) === 1 && (await allow.count()) === 1, 'the consent page lacks a Deny and an Allow button');
      step(`asked "${h1}"`);
      await screenshot(page, shots, 'oidc-consent.png');

      const cb = await land(allow, '/cb', 'allowing');
      const first = await claimsOnCb(cb, 'after Allow');
      step(`back at the app as ${first.id_token.sub} (${first.userinfo.email}), id_token from ${first.id_token.iss} for ${first.id_token.aud}`);
      await screenshot(page, shots, 'oidc-claims.png');

      // 2. Log out of Latchkey: the remembered device and the remembered consent stay.
      const account = await page.goto(`${base}/account`);
      check(account && account.status() === 200 && at().pathname === '/account', `GET /account after signing in to the app shows ${page.url()}`);
      await land(page.getByRole('button', { name: 'Log out', exact: true }), '/login', 'logging out');
      step('logged out of Latchkey');

      // 3. Again: the password alone brings the browser back to the app.
      const seen = await startAtApp('starting at the app again');
      const again = await signIn('/cb', 'signing in again on the remembered device');
      const through = pathsSince(seen).filter((u) => u.origin === base);
      check(!through.some((u) => u.pathname === '/mfa'), `signing in again went through /mfa: ${history(seen)}`);
      const asked = navs.slice(seen).filter((r) => new URL(r.url()).pathname === '/oauth/authorize' && r.status() === 200);
      check(asked.length === 0, `signing in again showed the consent page: ${history(seen)}`);
      const second = await claimsOnCb(again, 'signing in again');
      check(second.id_token.sub === first.id_token.sub, `the second sign-in is ${second.id_token.sub}, the first was ${first.id_token.sub}`);
      check(second.id_token.nonce !== first.id_token.nonce, 'both id_tokens carry the same nonce');
      step(`back at the app with no second factor and no consent page: ${history(seen)}`);

      w.clean();
      console.log('ok: the app signed in through Latchkey, then again with the device and the consent remembered');
    });
  } finally {
    rp.close();
  }
}

await main(run);
