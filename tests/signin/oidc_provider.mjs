// A real OpenID Connect provider for the sign-in tests: panva's oidc-provider (certified),
// served over TLS on loopback. Usage:
//   node oidc_provider.mjs CONFIG.json
// CONFIG: {module, port, cert, key, issuer, client_id, client_secret, redirect_uri, accounts,
//          host (the address to listen on; default 127.0.0.1)}
// `module` is the path of oidc-provider's lib/index.js (installed under var/node by .ci/run).
// Its development interactions (any login, any password) stand in for the district's login
// form; everything the proxy relies on (discovery, JWKS, PKCE, the token endpoint, ID token
// signing) is the provider's own code. Prints "ready" once it listens.
import fs from 'node:fs';
import https from 'node:https';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { default: Provider } = await import(pathToFileURL(config.module).href);

const accounts = config.accounts || {};

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: [config.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email'],
    profile: ['name'],
    groups: ['groups'],
  },
  // the scope's claims in the ID token itself (as Entra ID puts `groups` there)
  conformIdTokenClaims: false,
  cookies: { keys: ['socialguard-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const known = accounts[id] || {};
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: known.email || `${id}@district.example`,
          name: known.name || id,
          groups: known.groups || [],
        };
      },
    };
  },
});

const server = https.createServer(
  { cert: fs.readFileSync(config.cert), key: fs.readFileSync(config.key) },
  provider.callback(),
);
server.listen(config.port, config.host || '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
