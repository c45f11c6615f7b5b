// A real OpenID Connect upstream issuer ("Corp") for Latchkey's tests, built on panva's
// oidc-provider: Latchkey is the relying party, this is the provider it signs users in through.
//
//   PORT=0 CLIENTS='[{"client_id":"latchkey","client_secret":"s3cret",
//                     "redirect_uris":["http://127.0.0.1:8080/login/upstream/corp/callback"]}]' \
//     node e2e/upstream.mjs
//
// Prints exactly one line on stdout once listening, `LISTENING http://127.0.0.1:<port>`; that
// URL is the issuer. Exits on SIGTERM/SIGINT and when stdin ends (so a test that spawns it with
// piped stdin and drops the pipe does not leave it running; started by hand, keep stdin open,
// e.g. from a terminal, where Ctrl-D stops it; `< /dev/null` makes it exit at once).
//
// Env: PORT (default 0 = OS-picked), CLIENTS (JSON array of { client_id, client_secret,
// redirect_uris }; each one a confidential client_secret_basic code-flow client, RS256 id_tokens).
// Clients can also be registered later (RFC 7591, POST /reg with JSON metadata; a `client_id`
// and `client_secret` in the body are kept, for tests that configure their relying party first).
//
// Provider: code flow, PKCE S256 required for every client, the RFC 9207 `iss` in every
// authorization response, scopes `openid email profile`, opaque access tokens, userinfo at /me,
// the built-in in-memory store, default TTLs. The id_token carries sub, nonce, iss, aud, iat, exp
// only (the provider's default conformIdTokenClaims); email, email_verified, name and
// preferred_username come from userinfo only. A browser that signed in once has an upstream
// session: the next /auth skips the login page (unless the RP sends prompt=login).
// Users (password `upstream-pw` for all; sub = login name): alice (verified), bob (unverified),
// carol (verified). Test control, outside the provider's routes:
//   POST /test/users/<id>  {"email":"...","email_verified":true|false[,"name":"..."]}  -> 204
// changes (or creates, password upstream-pw) that user's claims, e.g. to test an upstream that
// re-addresses a sub. Malformed JSON -> 400, other methods -> 405.
//
// Interaction pages (the provider's devInteractions are off):
//   GET  /interaction/:uid        login form: #login (name=login), #password (name=password),
//                                 #submit "Sign in upstream"; and a #cancel "Cancel" form.
//                                 A consent-only prompt is granted at once (no page).
//   POST /interaction/:uid/login  urlencoded login+password; wrong -> the form again, 401; right ->
//                                 login AND a Grant for every requested scope (no consent step),
//                                 303 to /auth/:uid, which 303s to redirect_uri?code&state&iss.
//   POST /interaction/:uid/abort  -> error=access_denied back at the redirect_uri.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Provider } from 'oidc-provider';

// stdout carries only the LISTENING line: oidc-provider prints its NOTICEs with console.info.
console.info = console.error;

const HOST = '127.0.0.1';
const PASSWORD = 'upstream-pw';

const users = new Map(Object.entries({
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Upstream' },
  bob: { email: 'bob@example.com', email_verified: false, name: 'Bob Upstream' },
  carol: { email: 'carol@example.com', email_verified: true, name: 'Carol Upstream' },
}));

const clients = JSON.parse(process.env.CLIENTS ?? '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  id_token_signed_response_alg: 'RS256',
}));

// Listen first: with PORT=0 the issuer (which must carry the port) is known only afterwards.
const server = createServer();
server.listen(Number.parseInt(process.env.PORT ?? '0', 10), HOST);
await once(server, 'listening');
const ISSUER = `http://${HOST}:${server.address().port}`;

// A fresh RS256 signing key at every start (as bench/peer/server.mjs), never written anywhere.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'upstream-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(ISSUER, {
  clients,
  jwks: { keys: [signingKey] },
  enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  responseTypes: ['code'], // discovery then lists only the code flow
  clientAuthMethods: ['client_secret_basic'],
  scopes: ['openid'], // plus the claims' keys below: openid email profile (no offline_access)
  claims: {
    acr: null, sid: null, auth_time: null, iss: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  pkce: { required: () => true }, // default requires it for public clients only; S256 is the only method
  features: {
    devInteractions: { enabled: false },
    // RFC 7591 registration at /reg, so a test can register its relying party once it knows its
    // own port. Test-only: the client picks its own id and secret (the defaults are random).
    registration: {
      enabled: true,
      idFactory: (ctx) => ctx.oidc.body.client_id ?? randomBytes(8).toString('hex'),
      secretFactory: (ctx) => ctx.oidc.body.client_secret ?? randomBytes(32).toString('base64url'),
    },
  },
  // Signed cookies. `secure` is left unset: the provider sets it only when the request is https
  // (ctx.secure), so over http://127.0.0.1 the cookies are plain and the browser keeps them.
  // Cookies ignore ports, so Latchkey on 127.0.0.1 shares this jar: own names, no clash.
  cookies: {
    keys: [randomBytes(32).toString('base64url')],
    names: { session: 'corp_session', interaction: 'corp_interaction', resume: 'corp_resume' },
  },
  // Claims are read at every use, so a change through /test/users shows at once.
  findAccount: (ctx, sub) => (users.has(sub) ? {
    accountId: sub,
    claims: async () => ({ sub, preferred_username: sub, ...users.get(sub) }),
  } : undefined),
});
provider.on('server_error', (ctx, err) => console.error('server_error', ctx.method, ctx.path, err));

// --- interaction pages --------------------------------------------------------------------------

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const loginPage = (uid, error) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Corp sign-in</title></head><body><h1>Corp sign-in</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
  <label>Login <input type="text" id="login" name="login" autocomplete="username" autofocus></label>
  <label>Password <input type="password" id="password" name="password" autocomplete="current-password"></label>
  <button type="submit" id="submit">Sign in upstream</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit" id="cancel">Cancel</button></form>
</body></html>`;

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function finish(ctx, result, mergeWithLastSubmission) {
  // = provider.interactionFinished, but through Koa's ctx (the response is Koa's to send).
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission }));
  ctx.status = 303;
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/;

provider.use(async (ctx, next) => {
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt, params, session } = details;

  if (ctx.method === 'GET' && !action) {
    if (prompt.name === 'consent') { // already signed in: grant what is missing, no page
      const grant = (details.grantId && await provider.Grant.find(details.grantId))
        || new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes = {} } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [res, scopes] of Object.entries(missingResourceScopes)) grant.addResourceScope(res, scopes.join(' '));
      return finish(ctx, { consent: { grantId: await grant.save() } }, true);
    }
    if (prompt.name !== 'login') ctx.throw(501, `prompt ${prompt.name} not implemented`);
    ctx.type = 'html';
    ctx.body = loginPage(uid);
    return undefined;
  }

  if (ctx.method === 'POST' && action === 'login') {
    if (prompt.name !== 'login') ctx.throw(400, 'not a login prompt');
    const form = Object.fromEntries(new URLSearchParams(await readBody(ctx.req)));
    if (!users.has(form.login) || form.password !== PASSWORD) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(uid, 'Invalid login or password.');
      return undefined;
    }
    // Consent in the same step: every requested scope (the `claims` parameter is off by default,
    // so the scopes' claims are all there is to grant).
    const grant = new provider.Grant({ accountId: form.login, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(params.scope);
    const grantId = await grant.save();
    return finish(ctx, { login: { accountId: form.login }, consent: { grantId } }, false);
  }

  if (ctx.method === 'POST' && action === 'abort') {
    return finish(ctx, { error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
  }
  return ctx.throw(405);
});

// --- test control, handled before anything reaches the provider ----------------------------------

const TEST_USER = /^\/test\/users\/([A-Za-z0-9._@-]+)$/;
const providerCallback = provider.callback();

server.on('request', async (req, res) => {
  const m = TEST_USER.exec(new URL(req.url, ISSUER).pathname);
  if (!m) return providerCallback(req, res);
  if (req.method !== 'POST') return res.writeHead(405, { allow: 'POST' }).end();
  let body;
  try {
    body = JSON.parse(await readBody(req));
    if (typeof body !== 'object' || body === null) throw new Error('not an object');
  } catch (err) {
    return res.writeHead(400, { 'content-type': 'text/plain' }).end(`bad JSON body: ${err.message}\n`);
  }
  const user = users.get(m[1]) ?? { name: m[1] };
  for (const k of ['email', 'email_verified', 'name']) if (k in body) user[k] = body[k];
  users.set(m[1], user);
  return res.writeHead(204).end();
});

// --- lifecycle ----------------------------------------------------------------------------------

const stop = () => process.exit(0);
process.on('SIGTERM', stop).on('SIGINT', stop);
process.stdin.on('end', stop).on('close', stop).on('error', stop).resume(); // resume: read, to see the end

process.stdout.write(`LISTENING ${ISSUER}\n`);
