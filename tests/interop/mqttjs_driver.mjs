// mqttjs_driver.mjs drives one MQTT.js client for imb's interop tests.
//
// It reads one JSON command per line on stdin and writes one JSON line per thing the
// client saw on stdout, in MQTT.js's own terms (reason codes and error texts as the
// library reports them). The Go tests (driver_test.go) speak the same line protocol
// to the paho driver (paho_driver.py).
//
// Commands: {"op":"connect", url, version, clientId, username?, password?,
// authData? (MQTT 5 Authentication Method OAUTH2-JWT), clean?, sessionExpiry?, will?:
// {topic, payload, qos, retain}}, {"op":"subscribe", topic, qos}, {"op":"publish",
// topic, payload, qos, retain}, {"op":"auth", token} (MQTT 5 re-authentication, AUTH
// 0x19), {"op":"end"}.
// Events: connack, error, suback, puback, message, disconnect, close, auth, ended.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';

const AUTH_METHOD = 'OAUTH2-JWT';
const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
let client = null;

function connect(c) {
  const opts = {
    protocolVersion: c.version,
    clientId: c.clientId,
    clean: c.clean ?? true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 30,
  };
  if (c.username) opts.username = c.username;
  if (c.password) opts.password = c.password;
  if (c.version === 5) {
    opts.properties = { sessionExpiryInterval: c.sessionExpiry ?? 0 };
    if (c.authData) {
      opts.properties.authenticationMethod = AUTH_METHOD;
      opts.properties.authenticationData = Buffer.from(c.authData);
    }
  }
  if (c.will) {
    opts.will = { topic: c.will.topic, payload: Buffer.from(c.will.payload), qos: c.will.qos, retain: c.will.retain };
  }
  client = mqtt.connect(c.url, opts);
  // The broker answers a re-authentication with AUTH: record what arrived, then let
  // MQTT.js apply its own checks (it completes the exchange on reason code 0x00).
  client.handleAuth = (packet, callback) => {
    emit({ ev: 'auth', code: packet.reasonCode, method: packet.properties?.authenticationMethod ?? '' });
    callback();
  };
  client.on('connect', (ack) => emit({
    ev: 'connack', code: ack.reasonCode ?? ack.returnCode ?? 0, sessionPresent: !!ack.sessionPresent,
  }));
  client.on('error', (err) => emit({ ev: 'error', code: typeof err.code === 'number' ? err.code : -1, text: err.message }));
  client.on('disconnect', (pk) => emit({
    ev: 'disconnect', code: pk.reasonCode ?? 0, text: pk.properties?.reasonString ?? '',
  }));
  client.on('close', () => emit({ ev: 'close' }));
  client.on('message', (topic, payload, pk) => emit({
    ev: 'message', topic, payload: payload.toString(), qos: pk.qos, retain: !!pk.retain,
  }));
}

function run(c) {
  switch (c.op) {
    case 'connect':
      connect(c);
      break;
    case 'subscribe':
      // On a refused filter MQTT.js passes the requested QoS in granted; the
      // SUBACK packet holds the codes the broker sent.
      client.subscribe(c.topic, { qos: c.qos }, (err, granted, packet) => emit({
        ev: 'suback',
        granted: packet?.granted ?? (granted ?? []).map((g) => g.qos),
        text: err ? err.message : '',
      }));
      break;
    case 'publish':
      client.publish(c.topic, c.payload, { qos: c.qos, retain: !!c.retain }, (err, pk) => emit({
        ev: 'puback',
        code: err ? (typeof err.code === 'number' ? err.code : -1) : (pk?.reasonCode ?? 0),
        text: err ? err.message : '',
      }));
      break;
    case 'auth':
      // MQTT.js has no public call for client-initiated re-authentication.
      client._sendPacket({
        cmd: 'auth',
        reasonCode: 0x19,
        properties: { authenticationMethod: AUTH_METHOD, authenticationData: Buffer.from(c.token) },
      }, (err) => { if (err) emit({ ev: 'error', code: -1, text: err.message }); });
      break;
    case 'end':
      client.end(false, {}, () => emit({ ev: 'ended' }));
      break;
    default:
      emit({ ev: 'error', code: -1, text: `driver: unknown op ${c.op}` });
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  try {
    run(JSON.parse(line));
  } catch (err) {
    emit({ ev: 'error', code: -1, text: `driver: ${err.message}` });
  }
});
// The test closing stdin ends the client: the process must not outlive its test.
lines.on('close', () => process.exit(0));
const { version } = JSON.parse(readFileSync(new URL('./node_modules/mqtt/package.json', import.meta.url), 'utf8'));
emit({ ev: 'ready', library: 'mqtt', version });
