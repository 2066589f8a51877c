/**
 * AMQP clients for tests: the official module SDK over AMQP (azure-iot-device-amqp; device
 * clients are ../helpers/hub.ts `deviceClient(…, "amqp")`),
 * and a plain rhea client for what the SDKs never send (SASL PLAIN, another identity's
 * address, a token that expires while attached), closed after each test.
 */
import tls from "node:tls";
import { ModuleClient } from "azure-iot-device";
import { Amqp } from "azure-iot-device-amqp";
import rhea, { type Connection, type EventContext, type Message, type Receiver, type Sender } from "rhea";
import { afterEach } from "vitest";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";

const closers: Array<() => Promise<unknown> | undefined> = [];

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** The key of a device or module (its primary key). */
export function keyOf(hub: EdgeHub, deviceId: string, moduleId?: string): string {
  const identity =
    moduleId === undefined ? hub.registry.getDevice(deviceId) : hub.registry.getModule(deviceId, moduleId);
  return identity?.authentication.symmetricKey?.primaryKey ?? "";
}

/** An official SDK module client over AMQP/TLS through the hub (registered if new); not opened. */
export async function amqpModule(hub: EdgeHub, deviceId: string, moduleId: string): Promise<ModuleClient> {
  if (!hub.registry.getDevice(deviceId)) await hub.registry.createDevice({ deviceId });
  if (!hub.registry.getModule(deviceId, moduleId)) await hub.registry.createModule({ deviceId, moduleId });
  const client = ModuleClient.fromConnectionString(
    `HostName=localhost;DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${keyOf(hub, deviceId, moduleId)};GatewayHostName=localhost:${hub.ports.amqps}`,
    Amqp,
  );
  await client.setOptions({ ca: hub.caCertificate });
  closers.push(() => client.close());
  return client;
}

/** A SAS token for `deviceId[/moduleId]` on the test hub (`localhost`), valid `secs` seconds. */
export function tokenFor(hub: EdgeHub, clientId: string, secs = 3600): string {
  const [deviceId = "", moduleId] = clientId.split("/");
  const resource = `localhost/devices/${deviceId}${moduleId === undefined ? "" : `/modules/${moduleId}`}`;
  return createSasToken(resource, keyOf(hub, deviceId, moduleId), Math.floor(Date.now() / 1000) + secs);
}

/** How a link ended: the condition of its detach error. */
export interface LinkEnd {
  condition: string | undefined;
  description: string | undefined;
}

/** A rhea client connection to the hub's AMQP listener, with promises around what tests wait for. */
export class RawAmqp {
  readonly connection: Connection;
  readonly #closed: Promise<void>;

  private constructor(connection: Connection) {
    this.connection = connection;
    // A clean close (the hub's close frame) ends with connection_close, a cut with disconnected.
    this.#closed = new Promise((resolve) => {
      connection.once("disconnected", () => resolve());
      connection.once("connection_close", () => resolve());
    });
    connection.on("error", () => undefined);
    connection.on("connection_error", () => undefined);
    connection.on("protocol_error", () => undefined);
  }

  /** Opens a connection; `plain` logs in with SASL PLAIN, otherwise none (as the Node SDK). */
  static async open(hub: EdgeHub, plain?: { username: string; password: string }): Promise<RawAmqp> {
    const container = rhea.create_container({ id: "test" });
    const connection = container.connect({
      transport: "tls",
      host: "localhost",
      hostname: "localhost",
      port: hub.ports.amqps,
      ca: hub.caCertificate,
      reconnect: false,
      ...(plain ? { username: plain.username, password: plain.password } : {}),
    } as Parameters<typeof container.connect>[0]);
    const raw = new RawAmqp(connection);
    closers.push(() => raw.close());
    await new Promise<void>((resolve, reject) => {
      connection.once("connection_open", () => resolve());
      connection.once("disconnected", (e: EventContext) =>
        reject(e.error ?? new Error("disconnected before open")),
      );
    });
    return raw;
  }

  /** Resolves when the hub ends the connection. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Attaches a sender to `address`; resolves once the hub attaches its end and does not detach it at once. */
  async sender(address: string): Promise<{ sender: Sender; ended: Promise<LinkEnd> }> {
    const sender = this.connection.open_sender({ target: { address }, autosettle: true });
    const ended = linkEnd(sender);
    await new Promise<void>((resolve) => sender.once("sender_open", () => resolve()));
    return { sender, ended };
  }

  /** Attaches a receiver from `address`. */
  receiver(address: string): { receiver: Receiver; ended: Promise<LinkEnd> } {
    const receiver = this.connection.open_receiver({ source: { address }, autoaccept: false });
    return { receiver, ended: linkEnd(receiver) };
  }

  /** Sends `message` on `sender`; resolves with the hub's outcome. */
  send(sender: Sender, message: Message): Promise<"accepted" | "rejected" | "released"> {
    return new Promise((resolve) => {
      const delivery = sender.send(message);
      for (const outcome of ["accepted", "rejected", "released"] as const)
        sender.on(outcome, (e: EventContext) => {
          if (e.delivery === delivery) resolve(outcome);
        });
    });
  }

  /** The `$cbs` links, attached once and kept (as the SDKs keep them). */
  #cbs: Promise<{ sender: Sender; receiver: Receiver }> | undefined;

  /** Puts `token` for `audience` on `$cbs`; resolves with the status code the hub answers. */
  async putToken(audience: string, token: string): Promise<number> {
    this.#cbs ??= (async () => {
      const { receiver } = this.receiver("$cbs");
      await new Promise<void>((resolve) => receiver.once("receiver_open", () => resolve()));
      const { sender } = await this.sender("$cbs");
      return { sender, receiver };
    })();
    return this.sendPutToken(await this.#cbs, audience, token);
  }

  /**
   * Sends a put-token on `$cbs` links attached already, now (in this tick: what else is sent
   * in it goes in the same write); resolves with the status code.
   */
  sendPutToken(
    cbs: { sender: Sender; receiver: Receiver },
    audience: string,
    token: string,
  ): Promise<number> {
    const { sender, receiver } = cbs;
    receiver.add_credit(1);
    const messageId = rhea.generate_uuid();
    const answer = new Promise<number>((resolve) => {
      const onMessage = (e: EventContext) => {
        if (e.message?.correlation_id !== messageId) return;
        receiver.off("message", onMessage);
        e.delivery?.accept();
        resolve(Number(e.message?.application_properties?.["status-code"]));
      };
      receiver.on("message", onMessage);
    });
    sender.send({
      message_id: messageId,
      to: "$cbs",
      reply_to: "cbs",
      application_properties: {
        operation: "put-token",
        type: "servicebus.windows.net:sastoken",
        name: audience,
      },
      body: token,
    });
    return answer;
  }

  /** The `$cbs` links, once a token was put. */
  get cbs(): Promise<{ sender: Sender; receiver: Receiver }> | undefined {
    return this.#cbs;
  }

  close(): Promise<void> {
    if (!this.connection.is_closed()) this.connection.close();
    this.connection.socket?.destroy?.();
    return this.#closed.then(() => undefined);
  }
}

function linkEnd(link: Sender | Receiver): Promise<LinkEnd> {
  return new Promise((resolve) => {
    const done = () => {
      // rhea's typings leave `remote` out.
      const remote = (link as unknown as { remote?: { detach?: { error?: Partial<LinkEnd> } } }).remote;
      const error = remote?.detach?.error;
      resolve({ condition: error?.condition, description: error?.description });
    };
    link.once(link.is_sender() ? "sender_close" : "receiver_close", done);
    link.once(link.is_sender() ? "sender_error" : "receiver_error", done);
  });
}

/** A raw TLS socket to the AMQP listener, for bytes no AMQP library would send. */
export function rawTls(hub: EdgeHub): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "localhost", port: hub.ports.amqps, ca: hub.caCertificate, servername: "localhost" },
      () => resolve(socket),
    );
    socket.once("error", reject);
    closers.push(() => void socket.destroy());
  });
}

/** The credit the hub has given `sender` (rhea's typings leave it out). */
export function creditOf(sender: Sender): number {
  return (sender as unknown as { credit: number }).credit;
}
