// A TCP relay between an edge hub and its parent that can cut the route, for benchmarks
// (the tests' relay, test/helpers/proxy.ts, hooks into vitest): cut() resets every open
// connection and refuses new ones until restore().
import net from "node:net";

/** Relays 127.0.0.1:<returned port> to 127.0.0.1:`target`. */
export async function startRelay(target) {
  const sockets = new Set();
  let cut = false;
  const track = (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (cut) return client.destroy();
    const upstream = net.connect(target, "127.0.0.1");
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      cut = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
