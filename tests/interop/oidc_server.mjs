// oidc_server.mjs runs node-oidc-provider on 127.0.0.1 for imb's interop tests.
//
// Environment: PORT (required), STATE_DIR (required: signing keys live there, so a
// restart keeps the key ids), ROTATE=1 (add a new ES256 signing key in front of the
// existing ones before starting: the provider signs with it, the old ones stay
// published). The broker's client is mqtt-broker / mqtt-broker-secret; things are
// client_credentials clients whose client id is the thing id (sub).
//
// STATE_DIR/harness.json, when present, changes what the provider does, to stand in for other authorization
// servers: {"scp": true} puts a JWT's scopes in an scp array instead of scope (Hydra, Okta, Entra ID);
// {"introspectionWithoutIss": true} drops iss from introspection answers (optional in RFC 7662; Hydra, Glewlwyd);
// {"brokerJWKS": {...}} registers the client mqtt-broker-pkjwt, authenticating with private_key_jwt and that key
// set, which may introspect and revoke any token like mqtt-broker.
//
// Stdout carries one JSON line per event the Go tests assert on: {"ev":"ready"},
// {"ev":"request","method":...,"path":...} for every HTTP request, and
// {"ev":"keys","kids":[...]} at start. Errors of the provider go to stderr.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT);
const stateDir = process.env.STATE_DIR;
if (!port || !stateDir) {
  process.stderr.write('oidc_server: PORT and STATE_DIR are required\n');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

// Scopes the AM default grants things, plus the cloud application's.
const scopes = 'publish subscribe fleet:read fleet:command';
const audience = 'urn:example:mqtt-broker';
const resources = {
  [audience]: {
    audience, scope: scopes, accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'ES256' } },
  },
  [`${audience}:opaque`]: {
    audience, scope: scopes, accessTokenFormat: 'opaque', accessTokenTTL: 600,
  },
};

async function newKey(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  return { ...jwk, alg, use: 'sig' };
}

// loadKeys keeps the signing keys in STATE_DIR/jwks.json (mode 0600) across restarts.
async function loadKeys() {
  const file = join(stateDir, 'jwks.json');
  let keys;
  if (existsSync(file)) {
    keys = JSON.parse(readFileSync(file, 'utf8')).keys;
  } else {
    keys = [await newKey('ES256'), await newKey('RS256')];
  }
  if (process.env.ROTATE === '1') {
    keys = [await newKey('ES256'), ...keys];
  }
  writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

function thingClient(id) {
  return {
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: scopes,
  };
}

const harnessFile = join(stateDir, 'harness.json');
const harness = existsSync(harnessFile) ? JSON.parse(readFileSync(harnessFile, 'utf8')) : {};
const brokerClients = ['mqtt-broker', ...(harness.brokerJWKS ? ['mqtt-broker-pkjwt'] : [])];
const extraClients = harness.brokerJWKS ? [{
  client_id: 'mqtt-broker-pkjwt',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: 'ES256',
  jwks: harness.brokerJWKS,
}] : [];

const keys = await loadKeys();
const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    {
      client_id: 'mqtt-broker',
      client_secret: 'mqtt-broker-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    thingClient('thing-1'),
    thingClient('thing-2'),
    thingClient('cloud-app'),
    thingClient('anonymous-thing'),
    ...extraClients,
  ],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  scopes: ['openid', 'offline_access', ...scopes.split(' ')],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => brokerClients.includes(client.clientId) || client.clientId === token.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => brokerClients.includes(client.clientId) || client.clientId === token.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        const info = resources[indicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
    },
  },
  // node-oidc-provider's introspection of a client_credentials token names no
  // subject (its RFC 9068 JWT form says sub = client id). The harness makes the
  // opaque form say what the JWT says, except for the client "anonymous-thing",
  // which shows that the broker then takes the introspection answer's client_id.
  extraTokenClaims: async (ctx, token) => {
    if (token.kind === 'ClientCredentials' && token.clientId !== 'anonymous-thing') {
      return { sub: token.clientId };
    }
    return undefined;
  },
  formats: {
    customizers: {
      jwt: async (ctx, token, jwt) => {
        if (harness.scp && typeof jwt.payload.scope === 'string') {
          jwt.payload.scp = jwt.payload.scope.split(' ');
          delete jwt.payload.scope;
        }
      },
    },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  cookies: { keys: ['imb-interop-development-only'] },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
provider.on('grant.error', (ctx, err) => process.stderr.write(`grant.error: ${err.message} ${err.error_description ?? ''}\n`));
provider.on('introspection.error', (ctx, err) => process.stderr.write(`introspection.error: ${err.message}\n`));
provider.on('revocation.error', (ctx, err) => process.stderr.write(`revocation.error: ${err.message}\n`));
provider.use(async (ctx, next) => {
  emit({ ev: 'request', method: ctx.method, path: ctx.path });
  await next();
  if (harness.introspectionWithoutIss && ctx.path === '/token/introspection' && ctx.body && typeof ctx.body === 'object') {
    delete ctx.body.iss;
  }
});

const server = provider.listen(port, '127.0.0.1');
server.on('listening', () => {
  emit({ ev: 'keys', kids: keys.map((k) => k.kid) });
  emit({ ev: 'ready', issuer });
});
server.on('error', (err) => {
  process.stderr.write(`oidc_server: listen: ${err.message}\n`);
  process.exit(1);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
