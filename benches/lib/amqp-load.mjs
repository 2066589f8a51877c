// AMQP telemetry load (the AMQP head's counterpart of mqtt-load.mjs): clients log in with SASL
// PLAIN and a SAS token, attach a sender to `/devices/{id}/messages/events` and keep `window`
// messages unsettled each; a message counts once the hub settles it `accepted`, which it
// does only after the store's commit (as a PUBACK on MQTT).
import rhea from "rhea";

/** One client: connects and attaches; `start()` sends `count` messages, resolves with how many were accepted. */
function connectClient(host, port, ca, c, window, body, acceptedOne) {
  return new Promise((resolve, reject) => {
    const container = rhea.create_container({ id: c.deviceId });
    const connection = container.connect({
      transport: "tls",
      host,
      port,
      ca,
      servername: "localhost",
      hostname: "localhost",
      username: `${c.deviceId}@sas.localhost`,
      password: c.token,
      reconnect: false,
      idle_time_out: 0,
    });
    connection.on("connection_error", (ctx) =>
      reject(new Error(`${c.deviceId}: ${ctx.connection.error?.description}`)),
    );
    connection.on("disconnected", (ctx) =>
      reject(new Error(`${c.deviceId}: ${ctx.error?.message ?? "disconnected"}`)),
    );
    const sender = connection.open_sender({ target: { address: `/devices/${c.deviceId}/messages/events` } });
    let sent = 0;
    let accepted = 0;
    let done;
    const pump = () => {
      while (sent < c.count && sent - accepted < window && sender.sendable()) {
        sender.send({ message_id: `${c.deviceId}-${sent}`, body: rhea.message.data_section(body) });
        sent++;
      }
    };
    sender.on("accepted", () => {
      accepted++;
      acceptedOne();
      if (accepted === c.count) {
        connection.close();
        done?.(accepted);
      } else pump();
    });
    // After the last acceptance the client closes; nothing that follows is a failure.
    const failed = (what) => (ctx) => {
      if (accepted < c.count)
        reject(new Error(`${c.deviceId}: ${what} ${ctx.sender?.error?.description ?? ""}`));
    };
    sender.on("sender_error", failed("link error"));
    connection.on("error", failed("error"));
    sender.on("rejected", (ctx) =>
      reject(new Error(`${c.deviceId}: rejected ${ctx.delivery.remote_state?.error?.description}`)),
    );
    sender.on("sendable", () => done && pump());
    sender.once("sender_open", () =>
      resolve({
        start: () =>
          new Promise((finish) => {
            done = finish;
            pump();
          }),
      }),
    );
  });
}

/** Connects every client; `run()` sends and resolves with what was accepted and how long it took. */
export async function openAmqpLoad({ host = "127.0.0.1", port, ca, clients, window, body }) {
  let total = 0;
  const runs = [];
  for (let i = 0; i < clients.length; i++) {
    runs.push(connectClient(host, port, ca, clients[i], window, body, () => total++));
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
  }
  const connected = await Promise.all(runs);
  return {
    async run() {
      const t0 = performance.now();
      await Promise.all(connected.map((c) => c.start()));
      return { ackedTotal: total, elapsedMs: performance.now() - t0 };
    },
  };
}
