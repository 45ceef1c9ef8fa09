#!/usr/bin/env node
// Conformance harness: runs Signal's own mock server (@signalapp/mock-server,
// AGPL-3.0, installed by `npm ci` at test time, never vendored) on loopback
// and plays the phones (simulated primary devices) for cosigner's Go tests.
//
// Protocol: JSON lines.
//   stdout, first line: {"event":"ready","url":"https://127.0.0.1:<port>","caPath":"<ca-cert.pem>"}
//   stdin, commands:    {"id":<any>,"cmd":"<name>", ...arguments}
//   stdout, answers:    {"id":<same>,"ok":true, ...} or {"id":<same>,"ok":false,"error":"..."}
//   stdout, events (no id):
//                       {"event":"send", from, to, status, entries, missingDevices,
//                        extraDevices, staleDevices}: the mock's verdict on each
//                       PUT /v1/messages (200, 409, 410, 404), before it answers;
//                       {"event":"message", from, to, type, bytes, firstByte, head, ok, error}:
//                       each envelope of an accepted send as the mock routes it (for a
//                       phone, ok:false is its libsignal refusing it: a 500 to the sender).
// Commands run concurrently; answers carry the command's id. The process exits
// when stdin closes (the mock's close() hangs while WebSockets are open).
//
// Commands:
//   create    {name}                  a simulated phone (device 1) for a new account
//                                     -> {aci, pni, number, deviceId: 1}
//   provision {name}                  arm: server.waitForProvision() is made pending
//                                     now, before the console dials -> {armed: true}
//   provision {name, url}             complete the armed (or next) provisioning with
//                                     that account's phone and the console's link URL;
//                                     answers once the console has linked and uploaded
//                                     one-time keys for ACI and PNI
//                                     -> {aci, pni, deviceId, registrationId, pniRegistrationId}
//   devices   {name}                  the account's devices as the mock holds them
//                                     -> {devices: [{deviceId, registrationId, pniRegistrationId}]}
//   keys      {name, deviceId}        key counts the mock holds for a device
//                                     -> {aci: {preKeys, kyberPreKeys}, pni: {...}}
//   addDevice {name}                  a simulated linked device (e.g. a Desktop) -> {deviceId}
//   unlink    {name, deviceId}        the phone removes a linked device (its id is then
//                                     reused by the next link, as on the real server
//                                     the same id can come back with new keys)
//   phoneText {name, deviceId, text}  the phone sends a normal Signal text (PQXDH+SPQR)
//                                     to one of its linked devices -> {sent: true}
//   messages  {}                      everything seen so far -> {messages, sends}
//   rateLimit {from, to}              sends from one account to the other get 428
//                                     {token, options} -> {limited: true}
//   stopRateLimiting {from, to}       lift it -> {refused: sends answered 428}
//   respondToChallengesWith {status}  PUT /v1/challenge answers status; without
//                                     one, 200 again -> {status}

'use strict';

if (Number(process.versions.node.split('.')[0]) < 20) {
  process.stderr.write(`[harness] Node ${process.versions.node} is too old: the mock server needs Node 20 or newer\n`);
  process.exit(1);
}

// The mock targets Node 24; Node 20 lacks Promise.withResolvers, which it uses
// for queued provisioning sockets and messages queued for offline devices.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = () => {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

const mock = require('@signalapp/mock-server');
const { Server, ServiceIdKind, EnvelopeType } = mock;

const caPath = path.join(
  path.dirname(require.resolve('@signalapp/mock-server/package.json')),
  'certs',
  'ca-cert.pem',
);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function log(...args) {
  process.stderr.write('[harness] ' + args.join(' ') + '\n');
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cosigner-mock-'));
function cleanup() {
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

const envelopeTypeNumber = {
  [EnvelopeType.CipherText]: 1,
  [EnvelopeType.PreKey]: 3,
  [EnvelopeType.SealedSender]: 6,
  [EnvelopeType.SenderKey]: 7,
  [EnvelopeType.Plaintext]: 8,
};

async function main() {
  const cdn3Path = path.join(tmp, 'cdn3');
  const updates2Path = path.join(tmp, 'updates2');
  fs.mkdirSync(cdn3Path);
  fs.mkdirSync(updates2Path);
  const timeout = Number(process.env.MOCK_TIMEOUT_MS || 60000);
  const server = new Server({ cdn3Path, updates2Path, timeout });

  // Record every envelope the mock routes. For a phone (device 1) the mock
  // decrypts it in-process before answering the sender, so an error here is
  // what makes PUT /v1/messages fail with 500.
  const seen = [];
  const origHandleMessage = server.handleMessage.bind(server);
  server.handleMessage = async (source, serviceIdKind, envelopeType, target, encrypted, timestamp) => {
    const rec = {
      event: 'message',
      from: source ? `${source.aci}.${source.deviceId}` : null,
      to: `${target.aci}.${target.deviceId}`,
      serviceIdKind,
      type: envelopeTypeNumber[envelopeType] ?? String(envelopeType),
      bytes: encrypted.length,
      firstByte: encrypted.length > 0 ? encrypted[0] : null,
      head: Buffer.from(encrypted.subarray(0, 8)).toString('hex'),
      timestamp: String(timestamp),
    };
    try {
      await origHandleMessage(source, serviceIdKind, envelopeType, target, encrypted, timestamp);
      rec.ok = true;
    } catch (err) {
      rec.ok = false;
      rec.error = String(err && err.message ? err.message : err);
      throw err;
    } finally {
      seen.push(rec);
      out(rec);
    }
  };

  // Record the mock's verdict on every PUT /v1/messages before it answers:
  // 200, or 409 / 410 / 404 with the device lists the sender must repair.
  const sends = [];
  const statusOf = { ok: 200, incomplete: 409, stale: 410, unknown: 404 };
  const origPrepare = server.prepareMultiDeviceMessage.bind(server);
  server.prepareMultiDeviceMessage = async (source, targetServiceId, messages, timestamp) => {
    const res = await origPrepare(source, targetServiceId, messages, timestamp);
    const rec = {
      event: 'send',
      from: source ? `${source.aci}.${source.deviceId}` : null,
      to: targetServiceId,
      status: statusOf[res.status] ?? String(res.status),
      entries: messages.map((m) => ({ deviceId: m.destinationDeviceId, type: m.type })),
      missingDevices: res.missingDevices ?? [],
      extraDevices: res.extraDevices ?? [],
      staleDevices: res.staleDevices ?? [],
    };
    sends.push(rec);
    out(rec);
    return res;
  };

  await server.listen(0, '127.0.0.1');
  const { port } = server.address();

  const phones = new Map(); // name -> PrimaryDevice
  const armed = new Map(); // name -> Promise<PendingProvision>

  function phone(name) {
    const p = phones.get(name);
    if (!p) {
      throw new Error(`no account named ${JSON.stringify(name)} (create it first)`);
    }
    return p;
  }

  async function device(name, deviceId) {
    const p = phone(name);
    const d = await server.getDeviceByServiceId(p.device.aci, Number(deviceId));
    if (!d) {
      throw new Error(`account ${name} has no device ${deviceId}`);
    }
    return d;
  }

  function regIds(d) {
    return {
      deviceId: d.deviceId,
      registrationId: d.getCheckedRegistrationId(ServiceIdKind.ACI),
      pniRegistrationId: d.pni ? d.getCheckedRegistrationId(ServiceIdKind.PNI) : null,
    };
  }

  const commands = {
    async create({ name }) {
      if (!name || phones.has(name)) {
        throw new Error(`bad or duplicate account name ${JSON.stringify(name)}`);
      }
      const p = await server.createPrimaryDevice({ profileName: name });
      phones.set(name, p);
      return { aci: p.device.aci, pni: p.device.pni ?? null, number: p.device.number ?? null, deviceId: p.device.deviceId };
    },

    async provision({ name, url }) {
      const p = phone(name);
      if (!url) {
        if (armed.has(name)) {
          throw new Error(`a provisioning is already armed for ${name}`);
        }
        // Pending now, so the console's socket is taken as soon as it has
        // answered the mock's PUT /v1/address.
        const pending = server.waitForProvision();
        pending.catch(() => {}); // reported when completed
        armed.set(name, pending);
        return { armed: true };
      }
      let pending = armed.get(name);
      armed.delete(name);
      if (!pending) {
        pending = server.waitForProvision();
      }
      const provision = await pending;
      // Resolves once the console linked and uploaded one-time keys for
      // ACI and PNI.
      const d = await provision.complete({ provisionURL: url, primaryDevice: p });
      return { aci: d.aci, pni: d.pni ?? null, ...regIds(d) };
    },

    async devices({ name }) {
      const p = phone(name);
      const list = await server.getAllDevicesByServiceId(p.device.aci);
      return { devices: list.map(regIds) };
    },

    async keys({ name, deviceId }) {
      const d = await device(name, deviceId);
      const res = {};
      for (const [label, kind] of [['aci', ServiceIdKind.ACI], ['pni', ServiceIdKind.PNI]]) {
        if (kind === ServiceIdKind.PNI && !d.pni) {
          continue;
        }
        res[label] = {
          preKeys: await d.getPreKeyCount(kind),
          kyberPreKeys: await d.getKyberPreKeyCount(kind),
        };
      }
      return res;
    },

    async addDevice({ name }) {
      const p = phone(name);
      const d = await server.createSecondaryDevice(p);
      return regIds(d);
    },

    async unlink({ name, deviceId }) {
      const p = phone(name);
      const d = await device(name, deviceId);
      if (d.deviceId === 1) {
        throw new Error('cannot unlink the primary');
      }
      try {
        await p.unlink(d);
      } catch {
        // a device the phone did not link itself (createSecondaryDevice)
      }
      await server.removeDeviceByServiceId(p.device.aci, d.deviceId);
      return { unlinked: d.deviceId };
    },

    async phoneText({ name, deviceId, text }) {
      const p = phone(name);
      const d = await device(name, deviceId);
      await p.addSingleUseKey(d, await d.popSingleUseKey());
      await p.sendText(d, String(text ?? ''));
      return { sent: true };
    },

    async messages() {
      return { messages: seen, sends };
    },

    // The mock answers every send from one account to another with 428
    // (a challenge) until stopRateLimiting; PUT /v1/challenge answers
    // with respondToChallengesWith's status (200 until it is set).
    async rateLimit({ from, to }) {
      server.rateLimit({ source: phone(from).device.aci, target: phone(to).device.aci });
      return { limited: true };
    },

    async stopRateLimiting({ from, to }) {
      const refused = server.stopRateLimiting({ source: phone(from).device.aci, target: phone(to).device.aci });
      return { refused: refused ?? 0 };
    },

    async respondToChallengesWith({ status }) {
      if (status) {
        server.respondToChallengesWith(Number(status));
      } else {
        server.stopRespondingToChallenges();
      }
      return { status: status ?? 200 };
    },
  };

  out({ event: 'ready', url: `https://127.0.0.1:${port}`, caPath });

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (err) {
      out({ ok: false, error: `bad JSON: ${err.message}` });
      return;
    }
    const { id = null, cmd } = msg;
    const fn = Object.prototype.hasOwnProperty.call(commands, cmd) ? commands[cmd] : undefined;
    if (!fn) {
      out({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` });
      return;
    }
    fn(msg).then(
      (res) => out({ id, ok: true, ...res }),
      (err) => {
        log(cmd, 'failed:', process.env.HARNESS_DEBUG && err && err.stack ? err.stack : String(err));
        out({ id, ok: false, error: String(err && err.message ? err.message : err) });
      },
    );
  });
  rl.on('close', () => {
    cleanup();
    process.exit(0);
  });
}

process.on('SIGTERM', () => {
  cleanup();
  process.exit(0);
});
process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err && err.stack ? err.stack : String(err));
});

main().catch((err) => {
  log('fatal:', err && err.stack ? err.stack : String(err));
  cleanup();
  process.exit(1);
});
