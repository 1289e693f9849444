#!/usr/bin/env node
// An OpenID provider for the web console's sign-in tests: the certified `oidc-provider` npm
// package (pinned in package.json), configured for one client and a few static accounts.
//
// Usage:
//   node tests/peers/oidc_provider.mjs --client-id ID --redirect-uri URI [--client-secret S]
//                                      [--port N] [--id-token-alg ALG]
//
//   --client-id ID        the one registered client (required)
//   --redirect-uri URI    its one redirect URI, matched exactly (required)
//   --client-secret S     a confidential client authenticating with `client_secret_basic`;
//                         without it a public client (`token_endpoint_auth_method: none`)
//   --port N              port on 127.0.0.1 (default 0: a free one)
//   --id-token-alg ALG    the ID token's signature algorithm: RS256 (default), PS256, ES256,
//                         EdDSA; the key set holds an RSA, a P-256 and an Ed25519 key
//
// Once it accepts connections it prints ONE line on stdout and then nothing else:
//
//   issuer http://127.0.0.1:PORT
//
// Discovery is at `{issuer}/.well-known/openid-configuration`. PKCE is required (S256 only),
// the authorization code flow only. Keys are generated at start (nothing is persisted: a
// restarted provider is a new provider). Runs until killed; logs errors on stderr.
//
// Accounts (sub, email, email_verified, groups), claims `email` and `groups` in the ID token
// when the scopes `email` and `groups` are asked for:
//
//   u-alice    alice@example.com    true   ["support-leads"]
//   u-bob      bob@example.com      true   ["engineering"]
//   u-carol    carol@example.com    true   ["finance-approvers"]
//   u-mallory  mallory@example.com  false  ["support-leads"]   (an address never verified)
//
// Signing in (its own small interaction, no consent step: the client is first-party):
//   GET  /interaction/UID        an HTML page with one form:
//          <form method="post" action="/interaction/UID/login">
//            <input name="login"> (the email; case-insensitive) <input name="password"> (any,
//            not empty) <button type="submit">Sign-in</button>
//   POST /interaction/UID/login  unknown login or empty password: the form again, status 401,
//                                with `<p class="error">`; else 303 to the provider, which
//                                redirects to the client with `code`, `state` and `iss`.
//   Cookies: `_interaction` (path /interaction/UID), `_interaction_resume` (path /auth/UID),
//   `_session`, each with a `.sig` twin.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const ACCOUNTS = [
  { sub: 'u-alice', email: 'alice@example.com', email_verified: true, groups: ['support-leads'] },
  { sub: 'u-bob', email: 'bob@example.com', email_verified: true, groups: ['engineering'] },
  { sub: 'u-carol', email: 'carol@example.com', email_verified: true, groups: ['finance-approvers'] },
  { sub: 'u-mallory', email: 'mallory@example.com', email_verified: false, groups: ['support-leads'] },
];

const { values: args } = parseArgs({
  options: {
    'client-id': { type: 'string' },
    'redirect-uri': { type: 'string' },
    'client-secret': { type: 'string' },
    port: { type: 'string', default: '0' },
    'id-token-alg': { type: 'string', default: 'RS256' },
  },
  strict: true,
});
if (!args['client-id'] || !args['redirect-uri']) {
  process.stderr.write('usage: oidc_provider.mjs --client-id ID --redirect-uri URI [--client-secret S] [--port N] [--id-token-alg ALG]\n');
  process.exit(2);
}
if (!['RS256', 'PS256', 'ES256', 'EdDSA'].includes(args['id-token-alg'])) {
  process.stderr.write(`--id-token-alg: expected RS256, PS256, ES256 or EdDSA, got ${args['id-token-alg']}\n`);
  process.exit(2);
}

/** A fresh private JWK of each kind the provider may sign with. */
function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  return [{ ...rsa, use: 'sig' }, { ...ec, use: 'sig' }, { ...ed, use: 'sig' }];
}

const html = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  const message = error ? `<p class="error">${html(error)}</p>\n` : '';
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign-in</title></head>
<body>
<h1>Sign-in</h1>
${message}<form method="post" action="/interaction/${html(uid)}/login" autocomplete="off">
  <input required type="text" name="login" placeholder="Email" autofocus>
  <input required type="password" name="password" placeholder="Password">
  <button type="submit">Sign-in</button>
</form>
</body></html>
`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

// oidc-provider prints its notices with console.info: keep stdout for the one line tests read.
console.info = (...parts) => console.error(...parts);

const server = createServer();
server.listen({ host: '127.0.0.1', port: Number(args.port) }, () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const client = {
    client_id: args['client-id'],
    redirect_uris: [args['redirect-uri']],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    id_token_signed_response_alg: args['id-token-alg'],
    ...(args['client-secret']
      ? { client_secret: args['client-secret'], token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
  };
  const provider = new Provider(issuer, {
    clients: [client],
    jwks: { keys: signingKeys() },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    // The claims of the scopes asked for go in the ID token even though an access token is
    // issued too: the console reads only the ID token.
    conformIdTokenClaims: false,
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
    async findAccount(_ctx, sub) {
      const account = ACCOUNTS.find((a) => a.sub === sub);
      if (!account) return undefined;
      return { accountId: sub, async claims() { return { ...account }; } };
    },
    // A first-party client: everything it asks for is granted without a consent page.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
    },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc_provider: server error: ${err.stack}\n`));
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(url.pathname);
    if (!match) {
      callback(req, res);
      return;
    }
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== match[1] || details.prompt.name !== 'login') {
        send(res, 400, 'text/plain; charset=utf-8', `unexpected interaction step ${details.prompt.name}\n`);
        return;
      }
      if (!match[2] && req.method === 'GET') {
        send(res, 200, 'text/html; charset=utf-8', loginPage(details.uid));
        return;
      }
      if (match[2] && req.method === 'POST') {
        const form = await readForm(req);
        const login = (form.get('login') ?? '').trim().toLowerCase();
        const account = ACCOUNTS.find((a) => a.email === login);
        if (!account || !form.get('password')) {
          send(res, 401, 'text/html; charset=utf-8', loginPage(details.uid, 'unknown login or empty password'));
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
        return;
      }
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    } catch (err) {
      // No interaction cookie, or an expired one.
      send(res, 400, 'text/plain; charset=utf-8', `${err.name ?? 'error'}: ${err.message}\n`);
    }
  });

  process.stdout.write(`issuer ${issuer}\n`);
});
