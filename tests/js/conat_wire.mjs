// Wire-compatibility check: a stock socket.io-client (npm) speaking Conat to the cohub router.
//
//   node conat_wire.mjs '{"url": "http://127.0.0.1:5000", "cookies": {"remember_me": "..."},
//                        "account_id": "...", "hub_password": "...",
//                        "to_py": "account.<id>.from-js",      (optional: a Python subscriber)
//                        "from_py": "account.<id>.to-js",      (optional: Python publishes here)
//                        "echo": "account.<id>.js-echo"}'      (optional: Python requests here)
//
// Only socket.io-client and @msgpack/msgpack are used: no Conat client library. Every step
// records what it saw in `results`; the script prints ONE JSON line {ok, results, ...} and
// exits 0, or prints {ok: false, step, error, results} and exits 1. It never hangs: an
// overall timer (config timeout_ms, default 45 s) fails the run.

import { randomBytes, randomUUID } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import { io } from "socket.io-client";

class WireError extends Error {}

const cfg = JSON.parse(process.argv[2] ?? "{}");
const results = {};
const sockets = [];
let step = "start";

function finish(ok, error) {
  // a failed check is explained by its message; anything else (a bug, a crash) by its stack
  const text = error instanceof WireError ? error.message : String(error?.stack ?? error);
  const line = ok ? { ok: true, results } : { ok: false, step, error: text, results };
  process.stdout.write(JSON.stringify(line) + "\n");
  if (!ok) process.stderr.write(`conat_wire: FAILED at step '${step}': ${text}\n`);
  for (const s of sockets) s.disconnect();
  process.exit(ok ? 0 : 1);
}

setTimeout(
  () => finish(false, new WireError(`overall timeout after ${cfg.timeout_ms ?? 45000} ms`)),
  cfg.timeout_ms ?? 45000,
);
process.on("unhandledRejection", (e) => finish(false, e));
process.on("uncaughtException", (e) => finish(false, e));

// ---- helpers --------------------------------------------------------------------------------

function check(cond, what, got) {
  if (!cond) throw new WireError(`${what}; got ${JSON.stringify(got, jsonable)}`);
}

function jsonable(_key, value) {
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString("hex") };
  if (value?.type === "Buffer" && Array.isArray(value.data)) return { bytes: Buffer.from(value.data).toString("hex") };
  return value;
}

const ALPHANUMERIC = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
function randomId(n = 10) {
  return Array.from(randomBytes(n), (b) => ALPHANUMERIC[b % ALPHANUMERIC.length]).join("");
}

function cookieHeader(cookies) {
  return Object.entries(cookies)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join("; ");
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new WireError(`timeout after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// A stock connection, options as CoCalc's conat client uses them (reconnection off so a
// failure surfaces instead of looping). Resolves with the socket and the first `info`.
function connect(cookies) {
  const opts = { path: "/conat", transports: ["websocket"], reconnection: false, rememberUpgrade: true };
  if (cookies) opts.extraHeaders = { Cookie: cookieHeader(cookies) };
  const socket = io(cfg.url, opts);
  sockets.push(socket);
  const state = { infos: [], acked: 0, disconnectReason: null, permissions: [] };
  socket.on("permission", (p) => state.permissions.push(p));
  const info = new Promise((resolve, reject) => {
    socket.on("info", (info, ack) => {
      if (typeof ack === "function") {
        ack(); // CoCalc acks info with no arguments
        state.acked += 1;
      }
      state.infos.push(info);
      resolve(info);
    });
    socket.on("connect_error", (e) => reject(new WireError(`connect_error: ${e.message}`)));
  });
  const disconnected = new Promise((resolve) => {
    socket.on("disconnect", (reason) => {
      state.disconnectReason = reason;
      resolve(reason);
    });
  });
  return { socket, state, info: withTimeout(info, 10000, "info"), disconnected };
}

// Deliveries arrive as an event named after the SUBSCRIBED PATTERN.
function listen(socket, pattern) {
  const queue = [];
  const waiters = [];
  socket.on(pattern, (payload) => {
    if (waiters.length) waiters.shift()(payload);
    else queue.push(payload);
  });
  return {
    next(ms = 10000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return withTimeout(new Promise((r) => waiters.push(r)), ms, `a delivery on '${pattern}'`);
    },
    pending: () => queue.length,
  };
}

async function subscribe(socket, subject, queue = randomId()) {
  return socket.timeout(10000).emitWithAck("subscribe", { subject, queue });
}

function frame(subject, payload, { encoding = 0, headers, id = randomId(), seq = 0, done = 1 } = {}) {
  const raw = Buffer.isBuffer(payload) ? payload
    : encoding === 0 ? Buffer.from(encode(payload, { ignoreUndefined: true }))
    : Buffer.from(JSON.stringify(payload), "utf8");
  const f = [subject, id, seq, done, encoding, raw];
  if (headers) f.push(headers);
  return f;
}

async function publish(socket, subject, payload, opts) {
  return socket.timeout(10000).emitWithAck("publish", frame(subject, payload, opts));
}

function decodeRaw(raw, encoding) {
  const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : raw;
  return encoding === 0 ? decode(bytes) : JSON.parse(Buffer.from(bytes).toString("utf8"));
}

function checkDelivery(payload, pattern, subject) {
  check(payload && typeof payload === "object", `delivery on '${pattern}' must be an object`, payload);
  check(payload.subject === subject, `delivery subject must be '${subject}'`, payload.subject);
  check(Array.isArray(payload.data) && payload.data.length >= 5, "delivery data must be [id, seq, done, encoding, raw, headers?]", payload.data);
  const [id, seq, done, encoding, raw, headers] = payload.data;
  check(raw instanceof Uint8Array || raw instanceof ArrayBuffer, "raw must arrive as binary", typeof raw);
  return { id, seq, done, encoding, raw, headers: headers ?? null };
}

// ---- the run --------------------------------------------------------------------------------

async function main() {
  const A = cfg.account_id;
  check(typeof cfg.url === "string" && typeof A === "string", "config needs url and account_id", cfg);

  step = "connect";
  const acct = connect(cfg.cookies);
  const sock = acct.socket;
  const info = await acct.info;
  check(info.user?.account_id === A, "info.user.account_id must be ours", info);
  check(info.max_payload === 8000000, "info.max_payload must be 8000000", info);
  check(acct.state.acked === 1, "info must come with an ack callback", acct.state);
  results.info = { user: info.user, max_payload: info.max_payload, id: info.id, acked: acct.state.acked };
  sock.emit("stats", { recv0: { messages: 0, bytes: 0 } }); // fire-and-forget, as CoCalc does

  step = "pubsub";
  const subj = `account.${A}.js`;
  const queue = randomId();
  const sub1 = await subscribe(sock, subj, queue);
  check(sub1?.status === "added", "subscribe must ack {status: 'added'}", sub1);
  const sub2 = await subscribe(sock, subj, randomId());
  check(sub2?.status === "already-added", "a repeat subscribe must ack 'already-added'", sub2);
  const jsListen = listen(sock, subj);
  const sent = { hello: "from node", n: 42, f: 1.5, nested: { a: [1, 2, 3], t: true, z: null }, bin: new Uint8Array([0, 1, 254, 255]) };
  const msgId = randomId();
  const ack = await publish(sock, subj, sent, { id: msgId, headers: { hdr: "x" } });
  check(ack?.count === 1 && !ack.error, "publish must ack {count: 1}", ack);
  const got = checkDelivery(await jsListen.next(), subj, subj);
  check(got.id === msgId && got.seq === 0 && got.done === 1 && got.encoding === 0, "delivery must keep id, seq 0, done 1, encoding 0", got);
  check(got.headers?.hdr === "x", "headers must come back as a plain object", got.headers);
  const back = decodeRaw(got.raw, 0);
  check(JSON.stringify(back, jsonable) === JSON.stringify(sent, jsonable), "msgpack payload must roundtrip", back);
  results.pubsub = { subscribe: sub1, resubscribe: sub2, publish: ack, delivered: { subject: got.subject ?? subj, id_matches: got.id === msgId, seq: got.seq, done: got.done, encoding: got.encoding, headers: got.headers, data: JSON.parse(JSON.stringify(back, jsonable)) } };

  step = "wildcard";
  const wild = `account.${A}.w.*`;
  const wildSubj = `account.${A}.w.leaf`;
  const multi = await sock.timeout(10000).emitWithAck("subscribe", [
    { subject: wild, queue: randomId() },
    { subject: `account.${A}.w.>`, queue: randomId() },
  ]);
  check(Array.isArray(multi) && multi.length === 2 && multi.every((r) => r.status === "added"), "a list subscribe must ack a list", multi);
  const wildL = listen(sock, wild);
  const tailL = listen(sock, `account.${A}.w.>`);
  const wAck = await publish(sock, wildSubj, "leafy");
  check(wAck?.count === 2, "two matching patterns must count 2", wAck);
  for (const [l, p] of [[wildL, wild], [tailL, `account.${A}.w.>`]]) {
    const d = checkDelivery(await l.next(), p, wildSubj);
    check(decodeRaw(d.raw, d.encoding) === "leafy", "wildcard payload", d);
    check(d.headers === null, "no headers were sent, so none must arrive", d.headers);
  }
  results.wildcard = { subscribe: multi, publish: wAck, event_names: [wild, `account.${A}.w.>`], concrete_subject: wildSubj };

  step = "json";
  const jsonSubj = `account.${A}.json`;
  check((await subscribe(sock, jsonSubj))?.status === "added", "subscribe json", null);
  const jsonL = listen(sock, jsonSubj);
  const jsonSent = { enc: "json", list: [1, "two", { three: 3 }], unicode: "héllo ✓" };
  const jAck = await publish(sock, jsonSubj, jsonSent, { encoding: 1, headers: { kind: "json" } });
  check(jAck?.count === 1, "JSON publish must count 1", jAck);
  const jd = checkDelivery(await jsonL.next(), jsonSubj, jsonSubj);
  check(jd.encoding === 1, "encoding 1 must be preserved", jd.encoding);
  const jBack = decodeRaw(jd.raw, 1);
  check(JSON.stringify(jBack) === JSON.stringify(jsonSent), "JSON payload must roundtrip", jBack);
  results.json = { publish: jAck, encoding: jd.encoding, headers: jd.headers, data: jBack };

  step = "chunked";
  // A message over one chunk: CoCalc's chunk size is max_payload - 100000 = 7_900_000 bytes.
  const bigSubj = `account.${A}.big`;
  check((await subscribe(sock, bigSubj))?.status === "added", "subscribe big", null);
  const bigL = listen(sock, bigSubj);
  const blob = randomBytes(8_500_000);
  const bigRaw = Buffer.from(encode({ blob }));
  const chunkSize = Math.max(1000, info.max_payload - 100000);
  const bigId = randomId();
  const acks = [];
  for (let seq = 0, i = 0; i < bigRaw.length; seq++, i += chunkSize) {
    const last = i + chunkSize >= bigRaw.length;
    acks.push(await publish(sock, bigSubj, bigRaw.subarray(i, i + chunkSize), { id: bigId, seq, done: last ? 1 : 0, headers: last ? { big: true } : undefined }));
  }
  check(acks.length === 2 && acks.every((a) => a?.count === 1), "each chunk must ack {count: 1}", acks);
  const parts = [];
  for (let k = 0; k < acks.length; k++) {
    const d = checkDelivery(await bigL.next(20000), bigSubj, bigSubj);
    check(d.id === bigId && d.seq === k && d.done === (k === acks.length - 1 ? 1 : 0), "chunks must arrive in order with seq/done", { id: d.id, seq: d.seq, done: d.done });
    parts.push(Buffer.from(d.raw instanceof ArrayBuffer ? new Uint8Array(d.raw) : d.raw));
    if (d.done) check(d.headers?.big === true, "headers ride on the last chunk", d.headers);
  }
  const bigBack = decode(Buffer.concat(parts));
  check(Buffer.from(bigBack.blob).equals(blob), "reassembled chunks must equal the original", bigBack.blob?.length);
  results.chunked = { bytes: bigRaw.length, chunks: acks.length, acks, reassembled: true };

  step = "hub-api";
  const inbox = `_INBOX.account-${A}.${randomId()}`;
  const inboxPattern = `${inbox}.*`;
  const inboxAck = await subscribe(sock, inboxPattern);
  check(inboxAck?.status === "added", "subscribing to our own inbox must be allowed", inboxAck);
  const pending = new Map();
  sock.on(inboxPattern, (payload) => {
    const waiter = pending.get(payload?.subject);
    if (waiter) waiter(payload);
  });
  async function request(subject, mesg) {
    const reply = `${inbox}.${randomId()}`;
    const answer = new Promise((r) => pending.set(reply, r));
    const pAck = await publish(sock, subject, mesg, { headers: { "CN-Reply": reply } });
    check(pAck?.count >= 1, `request to '${subject}' must reach a subscriber`, pAck);
    const d = checkDelivery(await withTimeout(answer, 10000, `reply to ${JSON.stringify(mesg)}`), inboxPattern, reply);
    pending.delete(reply);
    return decodeRaw(d.raw, d.encoding);
  }
  const api = `hub.account.${A}.api`;
  const pong = await request(api, { name: "system.ping", args: [] });
  check(typeof pong?.now === "number", "system.ping must reply {now}", pong);
  const whoami = await request(api, { name: "system.test", args: [] });
  check(whoami?.account_id === A, "system.test must see our account_id", whoami);
  const title = `js wire ${randomId(6)}`;
  const projectId = await request(api, { name: "projects.createProject", args: [{ title }] });
  check(typeof projectId === "string" && /^[0-9a-f-]{36}$/.test(projectId), "createProject must reply a uuid", projectId);
  const listed = await request(api, { name: "projects.list", args: [] });
  const mine = Array.isArray(listed) ? listed.find((p) => p.project_id === projectId) : undefined;
  check(mine?.title === title && mine?.group === "owner", "projects.list must contain the new project", listed);
  const dates = Object.entries(mine).filter(([, v]) => v instanceof Date).map(([k]) => k);
  const unknown = await request(api, { name: "nope.nothing", args: [] });
  check(typeof unknown?.error === "string" && unknown.error.includes("unknown function"), "an unknown function must reply {error}", unknown);
  results.hub_api = { ping: pong, test: whoami, project_id: projectId, listed: { title: mine.title, group: mine.group, date_fields: dates }, unknown };

  step = "subscriptions";
  const subs = await sock.timeout(10000).emitWithAck("subscriptions", null);
  for (const s of [subj, wild, `account.${A}.w.>`, jsonSubj, bigSubj, inboxPattern]) {
    check(Array.isArray(subs) && subs.includes(s), `subscriptions must list '${s}'`, subs);
  }
  const unsubAck = await sock.timeout(10000).emitWithAck("unsubscribe", { subject: wild });
  const subsAfter = await sock.timeout(10000).emitWithAck("subscriptions", null);
  check(!subsAfter.includes(wild) && subsAfter.includes(subj), "unsubscribe must drop exactly that subject", subsAfter);
  const afterAck = await publish(sock, wildSubj, "once");
  check(afterAck?.count === 1, "after unsubscribing one of two patterns the count must be 1", afterAck);
  await tailL.next();
  results.subscriptions = { before: subs, unsubscribe_ack: unsubAck ?? null, after: subsAfter, count_after_unsubscribe: afterAck.count };

  step = "permission";
  const other = cfg.other_account_id ?? randomUUID();
  const denied = await subscribe(sock, `account.${other}.>`);
  check(denied?.code === 403 && typeof denied.error === "string", "a subscribe to another account must ack code 403", denied);
  const deniedPub = await publish(sock, `account.${other}.x`, 1);
  check(deniedPub?.code === 403, "a publish to another account must ack code 403", deniedPub);
  const deniedHubSub = await subscribe(sock, api);
  check(deniedHubSub?.code === 403, "subscribing to our own hub API subject must be denied", deniedHubSub);
  await withTimeout((async () => { while (acct.state.permissions.length < 3) await new Promise((r) => setTimeout(r, 20)); })(), 5000, "3 permission events");
  const perms = acct.state.permissions;
  check(perms.some((p) => p.type === "sub" && p.subject === `account.${other}.>` && typeof p.message === "string"), "a 'permission' event of type sub", perms);
  check(perms.some((p) => p.type === "pub" && p.subject === `account.${other}.x`), "a 'permission' event of type pub", perms);
  const inboxPub = await publish(sock, `_INBOX.someone.else.${randomId()}`, 1);
  check(inboxPub?.count === 0 && !inboxPub.error, "publishing to any _INBOX must be allowed", inboxPub);
  results.permission = { subscribe: denied, publish: deniedPub, hub_api_subscribe: deniedHubSub, events: perms, inbox_publish: inboxPub };

  step = "bad-requests";
  const badSubj = await publish(sock, "a..b", 1);
  check(typeof badSubj?.error === "string" && badSubj.error.includes("invalid subject"), "an invalid subject must ack {error}", badSubj);
  const noQueue = await sock.timeout(10000).emitWithAck("subscribe", { subject: `account.${A}.nq` });
  check(typeof noQueue?.error === "string" && noQueue.error.includes("queue"), "a subscribe without queue must ack {error}", noQueue);
  const noSubs = await publish(sock, `account.${A}.nobody`, 1);
  check(noSubs?.count === 0, "a publish nobody hears must count 0", noSubs);
  check(sock.connected, "bad requests must not cost the connection", sock.connected);
  results.bad_requests = { invalid_subject: badSubj, no_queue: noQueue, nobody: noSubs };

  step = "wait-for-interest";
  const wfi = (subject, timeout) => sock.timeout(timeout + 5000).emitWithAck("wait-for-interest", { subject, timeout });
  const already = await wfi(subj, 1000);
  check(already === true, "wait-for-interest on a subscribed subject must ack true", already);
  const none = await wfi(`account.${A}.none`, 0);
  check(none === false, "wait-for-interest with timeout 0 and no subscriber must ack false", none);
  const laterSubj = `account.${A}.later`;
  const later = wfi(laterSubj, 5000);
  await new Promise((r) => setTimeout(r, 100));
  check((await subscribe(sock, laterSubj))?.status === "added", "subscribe later", null);
  const laterAck = await later;
  check(laterAck === true, "a pending wait-for-interest must ack true once someone subscribes", laterAck);
  results.wait_for_interest = { subscribed: already, none, later: laterAck };

  if (cfg.hub_password) {
    step = "hub-identity";
    const hub = connect({ hub_password: cfg.hub_password });
    const hubInfo = await hub.info;
    check(hubInfo.user?.hub_id === "hub", "a hub_password cookie must give {hub_id: 'hub'}", hubInfo);
    const hubSubj = `account.${A}.tohub`;
    check((await subscribe(hub.socket, hubSubj, "0"))?.status === "added", "hub subscribe", null);
    const hubL = listen(hub.socket, hubSubj);
    const toHub = await publish(sock, hubSubj, { to: "hub" });
    check(toHub?.count === 1, "account -> hub publish must count 1", toHub);
    const hd = checkDelivery(await hubL.next(), hubSubj, hubSubj);
    check(decodeRaw(hd.raw, hd.encoding)?.to === "hub", "hub must receive the account's message", hd);
    const fromHub = await publish(hub.socket, subj, { from: "hub" });
    check(fromHub?.count === 1, "hub -> account publish must count 1", fromHub);
    const ad = checkDelivery(await jsListen.next(), subj, subj);
    check(decodeRaw(ad.raw, ad.encoding)?.from === "hub", "account must receive the hub's message", ad);
    hub.socket.disconnect();
    results.hub_identity = { user: hubInfo.user, to_hub: toHub, from_hub: fromHub };
  }

  step = "no-cookie";
  const anon = connect(null);
  const anonInfo = await anon.info;
  const anonReason = await withTimeout(anon.disconnected, 5000, "the server to disconnect a cookieless socket");
  check(typeof anonInfo.user?.error === "string" && anonInfo.user.code === 401, "no cookie must give info.user {error, code: 401}", anonInfo);
  check(anon.state.acked === 0, "the failure info is a plain emit (no ack)", anon.state);
  check(anonReason === "io server disconnect", "the server must disconnect a cookieless socket", anonReason);
  const bad = connect({ remember_me: "not-a-session" });
  const badInfo = await bad.info;
  const badReason = await withTimeout(bad.disconnected, 5000, "the server to disconnect a bad-cookie socket");
  check(typeof badInfo.user?.error === "string" && !badInfo.user.account_id, "a bad remember_me must give info.user.error", badInfo);
  results.no_cookie = { user: anonInfo.user, disconnect: anonReason };
  results.bad_cookie = { user: badInfo.user, disconnect: badReason };

  if (cfg.to_py || cfg.from_py || cfg.echo) {
    step = "python-interop";
    const interop = {};
    const waits = [];
    let fromPyL, echoAnswered;
    // Listen before subscribing: Python waits for interest and publishes the moment the
    // subscription exists, so its message can arrive in the same read as the subscribe ack.
    if (cfg.from_py) {
      fromPyL = listen(sock, cfg.from_py);
      check((await subscribe(sock, cfg.from_py))?.status === "added", "subscribe from_py", null);
    }
    if (cfg.echo) {
      const echoL = listen(sock, cfg.echo);
      check((await subscribe(sock, cfg.echo, "0"))?.status === "added", "subscribe echo", null);
      echoAnswered = (async () => {
        const d = checkDelivery(await echoL.next(25000), cfg.echo, cfg.echo);
        const req = decodeRaw(d.raw, d.encoding);
        const replyTo = d.headers?.["CN-Reply"];
        check(typeof replyTo === "string" && replyTo.startsWith("_INBOX."), "a Python request must carry CN-Reply", d.headers);
        const rAck = await publish(sock, replyTo, { echo: req, by: "node" }, { headers: { answered: "node" } });
        check(rAck?.count === 1, "the reply must reach the Python inbox", rAck);
        interop.echo = { request: JSON.parse(JSON.stringify(req, jsonable)), reply_to: replyTo, reply_ack: rAck };
      })();
      waits.push(echoAnswered);
    }
    if (cfg.to_py) {
      const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));
      const m1 = await publish(sock, cfg.to_py, { from: "node", n: 1, when, bin: new Uint8Array([1, 2, 3]) }, { headers: { via: "node" } });
      const m2 = await publish(sock, cfg.to_py, { from: "node", n: 2, json: true }, { encoding: 1 });
      interop.to_py = [m1, m2];
    }
    if (fromPyL) {
      waits.push((async () => {
        const d = checkDelivery(await fromPyL.next(25000), cfg.from_py, cfg.from_py);
        const data = decodeRaw(d.raw, d.encoding);
        interop.from_py = {
          encoding: d.encoding,
          headers: d.headers,
          data: JSON.parse(JSON.stringify(data, jsonable)),
          when_is_date: data?.when instanceof Date,
          when_iso: data?.when instanceof Date ? data.when.toISOString() : null,
          blob_is_binary: data?.blob instanceof Uint8Array,
        };
      })());
    }
    await Promise.all(waits);
    results.python_interop = interop;
  }

  step = "done";
  finish(true);
}

main().catch((e) => finish(false, e));
