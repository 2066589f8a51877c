// A counted MQTT load and its tally, for benchmarks that must say which acknowledged
// messages arrived: clients over TLS each publish a fixed number of numbered messages at
// QoS 1 with a window in flight, and record which sequence numbers the broker PUBACKed;
// a Tally of what arrived (per client: each sequence number once, duplicates counted)
// compares with that record. CountingSubscriber is the tally at an MQTT broker.
import tls from "node:tls";
import mqtt from "mqtt-packet";

/** The CONNECT of a benchmark client (MQTT 3.1.1, clean session), as one buffer. */
export function connectPacket({ clientId, username, password }) {
  return mqtt.generate({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive: 60,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  });
}

/** What arrived, per client: a bitmap of sequence numbers, and duplicates. */
export class Tally {
  /** `counts[i]`: how many messages client i publishes. */
  constructor(counts) {
    this.seen = counts.map((n) => new Uint8Array(n));
    this.unique = 0;
    this.duplicates = 0;
    /** Arrivals outside every client's range (should stay 0). */
    this.strays = 0;
  }

  add(client, seq) {
    const bits = this.seen[client];
    if (bits === undefined || !(seq >= 0 && seq < bits.length)) {
      this.strays++;
      return;
    }
    if (bits[seq]) this.duplicates++;
    else {
      bits[seq] = 1;
      this.unique++;
    }
  }

  /** Messages marked in `acked` (bitmaps like `seen`) that did not arrive. */
  missingOf(acked) {
    let missing = 0;
    acked.forEach((bits, i) => {
      const seen = this.seen[i];
      for (let s = 0; s < bits.length; s++) if (bits[s] && !seen[s]) missing++;
    });
    return missing;
  }
}

/**
 * Connects every client (TLS to `host:port` trusting `ca`, MQTT 3.1.1, clean session) and
 * resolves once all are connected. `clients[i]`: `{ clientId, username?, password?, count,
 * topicOf(seq) }`. Nothing is published until `run()`, which starts all clients at once
 * and resolves when each has its `count` messages acknowledged or lost its connection:
 * `{ acked, elapsedMs, aborted }` (`aborted`: clients whose connection ended first).
 * `acked[i]` marks the sequence numbers the broker acknowledged to client i.
 */
export async function openLoad({ host = "127.0.0.1", port, ca, clients, window, body }) {
  const acked = clients.map((c) => new Uint8Array(c.count));
  const state = { total: 0, waiters: [] };
  const ackedOne = () => {
    state.total++;
    if (state.waiters.length > 0 && state.waiters[0].n <= state.total) {
      const ready = state.waiters.filter((w) => w.n <= state.total);
      state.waiters = state.waiters.filter((w) => w.n > state.total);
      for (const w of ready) w.resolve();
    }
  };
  const runs = [];
  for (let i = 0; i < clients.length; i++) {
    runs.push(connectClient(host, port, ca, clients[i], acked[i], window, body, ackedOne));
    // Not all handshakes at once: a burst of 1000 TLS handshakes times some out.
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
  }
  const connected = await Promise.all(runs);
  return {
    acked,
    /** Acknowledged so far, all clients. */
    get total() {
      return state.total;
    },
    /** Resolves once `n` messages have been acknowledged in all. */
    whenAcked(n) {
      if (state.total >= n) return Promise.resolve();
      return new Promise((resolve) => state.waiters.push({ n, resolve }));
    },
    async run() {
      const t0 = performance.now();
      const results = await Promise.all(connected.map((c) => c.start()));
      return {
        acked,
        ackedTotal: state.total,
        elapsedMs: performance.now() - t0,
        aborted: results.filter((r) => r === "aborted").length,
      };
    },
  };
}

/** One client: resolves once connected, with `start()` to publish its messages. */
function connectClient(host, port, ca, c, acked, window, body, ackedOne) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, ca });
    const parser = mqtt.parser({ protocolVersion: 4 });
    const seqOf = new Int32Array(65536);
    let messageId = 0;
    let next = 0;
    let inflight = 0;
    let connected = false;
    let finish;
    const finished = new Promise((r) => {
      finish = r;
    });
    const pump = () => {
      socket.cork();
      while (inflight < window && next < c.count) {
        messageId = (messageId % 65535) + 1;
        seqOf[messageId] = next;
        inflight++;
        socket.write(
          mqtt.generate({
            cmd: "publish",
            topic: c.topicOf(next++),
            payload: body,
            qos: 1,
            messageId,
            retain: false,
            dup: false,
          }),
        );
      }
      socket.uncork();
      if (inflight === 0 && next === c.count) {
        socket.end(mqtt.generate({ cmd: "disconnect" }));
        finish("done");
      }
    };
    parser.on("packet", (p) => {
      if (p.cmd === "connack") {
        if (p.returnCode !== 0) return reject(new Error(`CONNACK ${p.returnCode} for ${c.clientId}`));
        connected = true;
        resolve({
          start: () => {
            pump();
            return finished;
          },
        });
      } else if (p.cmd === "puback") {
        acked[seqOf[p.messageId]] = 1;
        inflight--;
        ackedOne();
        pump();
      }
    });
    parser.on("error", (err) => socket.destroy(err));
    socket.on("data", (d) => parser.parse(d));
    // After CONNACK an error only ends the run (the broker was killed, say): what was
    // acknowledged stays recorded.
    socket.on("error", (err) => {
      if (!connected) reject(err);
    });
    socket.on("close", () => {
      if (!connected) reject(new Error(`${c.clientId}: connection closed before CONNACK`));
      finish("aborted");
    });
    socket.on("secureConnect", () => socket.write(connectPacket(c)));
  });
}

/**
 * A subscriber with a persistent session (clean session false, QoS 1) that tallies what
 * arrives on `topic`: `parse(topic)` gives `[client, seq]`. It also watches Mosquitto's
 * bridge notifications (`$SYS/broker/connection/+/state`): `bridgeUpAt` is when a bridge
 * last announced itself connected. `connect()` may be called again after the broker
 * restarted; the session (subscription and queued messages) carries over.
 */
export class CountingSubscriber {
  constructor({ host = "127.0.0.1", port, ca, clientId, topic, parse, tally }) {
    Object.assign(this, { host, port, ca, clientId, topic, parse, tally });
    this.firstAt = undefined;
    this.lastAt = undefined;
    this.bridgeUpAt = undefined;
    this.subscribed = false;
    this.socket = undefined;
    this.waiters = [];
  }

  /** Connects (retrying every 10 ms for up to `timeoutMs` while the broker starts); subscribes the first time. */
  async connect(timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.#connectOnce();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  #connectOnce() {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: this.host, port: this.port, ca: this.ca, servername: "localhost" });
      const parser = mqtt.parser({ protocolVersion: 4 });
      let ready = false;
      parser.on("packet", (p) => {
        if (p.cmd === "connack") {
          if (p.returnCode !== 0) return socket.destroy(new Error(`CONNACK ${p.returnCode}`));
          this.socket = socket;
          if (this.subscribed) {
            ready = true;
            return resolve(p.sessionPresent);
          }
          socket.write(
            mqtt.generate({
              cmd: "subscribe",
              messageId: 1,
              subscriptions: [
                { topic: this.topic, qos: 1 },
                { topic: "$SYS/broker/connection/+/state", qos: 1 },
              ],
            }),
          );
        } else if (p.cmd === "suback") {
          this.subscribed = true;
          ready = true;
          resolve(false);
        } else if (p.cmd === "publish") {
          if (p.qos > 0) socket.write(mqtt.generate({ cmd: "puback", messageId: p.messageId }));
          this.#arrived(p);
        } else if (p.cmd === "pingresp") {
          // keepalive answered
        }
      });
      parser.on("error", (err) => socket.destroy(err));
      socket.on("data", (d) => parser.parse(d));
      socket.on("error", (err) => {
        if (!ready) reject(err);
      });
      socket.on("close", () => {
        if (this.socket === socket) this.socket = undefined;
        if (!ready) reject(new Error("closed before CONNACK"));
      });
      socket.on("secureConnect", () =>
        socket.write(
          mqtt.generate({
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: 4,
            clean: false,
            clientId: this.clientId,
            keepalive: 600,
          }),
        ),
      );
    });
  }

  #arrived(p) {
    const now = performance.now();
    if (p.topic.startsWith("$SYS/")) {
      // A live "1" (not the retained copy a new subscription gets): the bridge just connected.
      if (p.payload.toString() === "1" && !p.retain) this.bridgeUpAt = now;
      this.#wake();
      return;
    }
    const [client, seq] = this.parse(p.topic);
    this.tally.add(client, seq);
    this.firstAt ??= now;
    this.lastAt = now;
    this.#wake();
  }

  #wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves on the next arrival (message or notification), or after `ms`. */
  next(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Disconnects cleanly: the broker keeps the session and queues for it. */
  disconnect() {
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once("close", resolve);
      socket.end(mqtt.generate({ cmd: "disconnect" }));
    });
  }
}
