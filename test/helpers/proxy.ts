/**
 * A TCP relay between a hub and its parent that can black-hole the route: bytes stop
 * flowing both ways and no connection is closed or refused, as when a cellular uplink
 * drops packets. Only keepalives and timeouts can notice.
 */
import net from "node:net";
import { afterEach } from "vitest";

const proxies = new Set<BlackholeProxy>();
afterEach(async () => {
  await Promise.all([...proxies].map((p) => p.close()));
});

export class BlackholeProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #blackholed = false;
  #cut = false;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  /** Relays 127.0.0.1:`port` (the returned proxy's {@link BlackholeProxy.port}) to 127.0.0.1:`target`. */
  static async start(target: number, port = 0): Promise<BlackholeProxy> {
    const server = net.createServer();
    const proxy = new BlackholeProxy(server);
    server.on("connection", (client) => proxy.#relay(client, target));
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    proxies.add(proxy);
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #relay(client: net.Socket, target: number): void {
    this.#sockets.add(client);
    client.on("close", () => this.#sockets.delete(client));
    client.on("error", () => client.destroy());
    if (this.#cut) {
      client.destroy();
      return;
    }
    if (this.#blackholed) {
      client.on("data", () => undefined); // swallowed
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    this.#sockets.add(upstream);
    upstream.on("close", () => {
      this.#sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    client.on("data", (d: Buffer) => {
      if (!this.#blackholed) upstream.write(d);
    });
    upstream.on("data", (d: Buffer) => {
      if (!this.#blackholed) client.write(d);
    });
  }

  /** From now on nothing passes, and nothing is closed. */
  blackhole(): void {
    this.#blackholed = true;
  }

  /** From now on the route is cut: open connections are reset, new ones closed at once. */
  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  /** The route works again: connections held silent are dropped, new ones relayed. */
  restore(): void {
    this.#blackholed = false;
    this.#cut = false;
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    proxies.delete(this);
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
