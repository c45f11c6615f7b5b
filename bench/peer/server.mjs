// Benchmark peer: panva's oidc-provider with the OAuth 2.0 Device Authorization
// Grant (RFC 8628) enabled.
//
// Copied from /work/shared/peers/oidc-provider/server.mjs and extended (see
// README.md in this folder) with the authorization-code grant: signing keys
// generated at start (RSA 2048 -> RS256, Ed25519 -> EdDSA), two public clients
// bench-rs / bench-ed, and a bench-only route POST /bench/codes that mints
// authorization codes for alice through the provider's own models, so that
// POST /token (authorization_code) and GET /me can be load-tested without
// driving the browser part of the flow for every code.
//
//   PORT=3900 STORE=map node server.mjs  # listens on 127.0.0.1 only
//
// Env:
//   PORT   listen port (default 3900)
//   STORE  "lru" (default) = the provider's built-in in-memory adapter
//                            (an LRU capped at 1000 entries, see README)
//          "map"           = map_adapter.mjs, an unbounded Map with TTL expiry
//                            (REQUIRED for the authorization-code bench)
//
// Everything not set below is the provider's default (user code charset
// base-20, mask ****-****, device code TTL 600 s, no polling interval in the
// response, opaque access tokens, authorization code TTL 60 s, ...).
//
// The provider's development-only interactions (devInteractions) are switched
// off and replaced by a minimal login + consent handler (mounted with
// provider.use) so the user-facing part of the device flow can be completed by
// a scripted HTTP client: see flow.mjs in /work/shared/peers/oidc-provider/.

import { createServer } from 'node:http';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { Provider } from 'oidc-provider';

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.PORT ?? '3900', 10);
const STORE = process.env.STORE ?? 'lru';
const ISSUER = `http://${HOST}:${PORT}`;

// One demo end-user. The login form checks these credentials.
const USERS = new Map([['alice', { password: 'wonderland', email: 'alice@example.com' }]]);

// ---------------------------------------------------------------------------
// Signing keys, generated at every start (never written anywhere). The
// provider would otherwise use its built-in development keystore.
// ---------------------------------------------------------------------------

function signingJwk(type, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const JWKS = {
  keys: [
    signingJwk('rsa', { modulusLength: 2048 }, 'bench-rs256', 'RS256'),
    signingJwk('ed25519', {}, 'bench-eddsa', 'EdDSA'),
  ],
};

// Authorization-code bench: every minted code carries this PKCE pair.
const BENCH_CODE_VERIFIER = 'bench-verifier-0123456789-0123456789-0123456789';
const BENCH_CODE_CHALLENGE = createHash('sha256').update(BENCH_CODE_VERIFIER).digest('base64url');
const BENCH_REDIRECT_URI = 'https://rp.example/cb';
const BENCH_SCOPE = 'openid email offline_access';
const BENCH_NONCE = 'bench-nonce';
const BENCH_MAX_CODES = 100_000;

const codeClient = (clientId, alg) => ({
  client_id: clientId,
  client_name: `Bench authorization code (${alg})`,
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [BENCH_REDIRECT_URI],
  id_token_signed_response_alg: alg,
});
const CODE_CLIENTS = new Set(['bench-rs', 'bench-ed']);

const configuration = {
  clients: [
    {
      client_id: 'bench-device',
      client_name: 'Bench Device',
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
    codeClient('bench-rs', 'RS256'),
    codeClient('bench-ed', 'EdDSA'),
  ],
  jwks: JWKS,
  // The provider's default claims plus the standard "email" scope (OIDC Core
  // 5.4), without which the scope is unknown and /me answers only { sub }.
  claims: {
    acr: null, sid: null, auth_time: null, iss: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
  },
  enabledJWA: {
    // Provider default: ['RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA'];
    // narrowed to the two algorithms we have keys for.
    idTokenSigningAlgValues: ['RS256', 'EdDSA'],
  },
  features: {
    deviceFlow: { enabled: true },
    devInteractions: { enabled: false },
  },
  // Sign the session/interaction cookies, as any real deployment would.
  cookies: { keys: ['bench-only-cookie-key-not-a-secret'] },
  async findAccount(ctx, sub) {
    if (!USERS.has(sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: USERS.get(sub).email };
      },
    };
  },
  // interactions.url keeps its default: `/interaction/${interaction.uid}`
};

if (STORE === 'map') {
  const { default: MapAdapter } = await import('./map_adapter.mjs');
  configuration.adapter = MapAdapter;
} else if (STORE !== 'lru') {
  throw new Error(`unknown STORE=${STORE} (use lru or map)`);
}

const provider = new Provider(ISSUER, configuration);

provider.on('server_error', (ctx, err) => {
  console.error('server_error', ctx.method, ctx.path, err);
});

// ---------------------------------------------------------------------------
// Minimal interaction (login + consent) pages.
// ---------------------------------------------------------------------------

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

async function finish(ctx, result, mergeWithLastSubmission) {
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission,
  });
  ctx.redirect(returnTo);
  ctx.status = 303;
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

provider.use(async (ctx, next) => {
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;

  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt, params, session } = details;

  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = page('Sign-in', `
<form method="post" action="/interaction/${esc(uid)}/login">
  <input type="text" name="login" placeholder="login" autofocus>
  <input type="password" name="password" placeholder="password">
  <button type="submit">Sign-in</button>
</form>
<a href="/interaction/${esc(uid)}/abort">Cancel</a>`);
    } else if (prompt.name === 'consent') {
      ctx.body = page('Authorize', `
<p>${esc(params.client_id)} asks for: ${esc(params.scope ?? '')}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
  <button type="submit">Continue</button>
</form>
<a href="/interaction/${esc(uid)}/abort">Cancel</a>`);
    } else {
      ctx.throw(501, `prompt ${prompt.name} not implemented`);
    }
    return undefined;
  }

  if (ctx.method === 'POST' && action === 'login') {
    if (prompt.name !== 'login') ctx.throw(400, 'not a login prompt');
    const form = await readForm(ctx.req);
    const user = USERS.get(form.login);
    if (!user || user.password !== form.password) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Sign-in', '<p>invalid login or password</p>');
      return undefined;
    }
    return finish(ctx, { login: { accountId: form.login } }, false);
  }

  if (ctx.method === 'POST' && action === 'confirm') {
    if (prompt.name !== 'consent') ctx.throw(400, 'not a consent prompt');
    await readForm(ctx.req);
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    if (missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    return finish(ctx, { consent: { grantId } }, true);
  }

  if (ctx.method === 'GET' && action === 'abort') {
    return finish(ctx, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, false);
  }

  return ctx.throw(405);
});

// ---------------------------------------------------------------------------
// Bench-only: mint authorization codes.
//
//   POST /bench/codes?client=bench-rs&n=N     (1 <= N <= 100000, loopback only)
//   -> 200 text/plain, N codes, one per line
//
// Stores exactly what the authorization endpoint stores after alice logged in
// and consented (compare node_modules/oidc-provider/lib/helpers/
// process_response_types.js, codeHandler): one Grant (alice, client) with
// OIDC scope "openid email offline_access", saved once per call, then N
// AuthorizationCode entries pointing at it. offline_access in the scope means
// the provider's default expiresWithSession() is false, so neither the code
// nor the tokens issued from it are bound to a Session (no session lookup at
// /token or /me). Codes live for the provider's default ttl.AuthorizationCode
// (60 s) and are single use; a second use of ANY of them revokes the grant and
// with it every other code, access and refresh token of the same call.
// ---------------------------------------------------------------------------

const LOOPBACK = new Set(['127.0.0.1', '::ffff:127.0.0.1']);

provider.use(async (ctx, next) => {
  if (ctx.path !== '/bench/codes') return next();
  ctx.set('cache-control', 'no-store');
  if (!LOOPBACK.has(ctx.req.socket.remoteAddress)) ctx.throw(403, 'loopback only');
  if (ctx.method !== 'POST') {
    ctx.set('allow', 'POST');
    ctx.throw(405);
  }
  const clientId = String(ctx.query.client ?? '');
  if (!CODE_CLIENTS.has(clientId)) ctx.throw(400, `client must be one of ${[...CODE_CLIENTS].join(', ')}`);
  const nRaw = String(ctx.query.n ?? '1');
  const n = /^[0-9]{1,6}$/.test(nRaw) ? Number(nRaw) : NaN;
  if (!(n >= 1 && n <= BENCH_MAX_CODES)) ctx.throw(400, `n must be an integer in 1..${BENCH_MAX_CODES}`);

  const client = await provider.Client.find(clientId);
  const accountId = 'alice';

  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(BENCH_SCOPE);
  const grantId = await grant.save();

  const authTime = Math.floor(Date.now() / 1000);
  const codes = new Array(n);
  for (let i = 0; i < n; i += 1) {
    const code = new provider.AuthorizationCode({
      accountId,
      authTime,
      client,
      codeChallenge: BENCH_CODE_CHALLENGE,
      codeChallengeMethod: 'S256',
      grantId,
      nonce: BENCH_NONCE,
      redirectUri: BENCH_REDIRECT_URI,
      scope: BENCH_SCOPE,
    });
    codes[i] = await code.save();
  }

  ctx.status = 200;
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = `${codes.join('\n')}\n`;
  return undefined;
});

// Unmatched paths fall through to Koa's default 404.
const server = createServer(provider.callback());

server.listen(PORT, HOST, () => {
  console.log(`oidc-provider ${ISSUER} (store=${STORE}, pid=${process.pid}) ready`);
  if (STORE !== 'map') {
    console.error('NOTE: STORE=lru holds only 1000 entries in all; authorization-code benches need STORE=map');
  }
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
