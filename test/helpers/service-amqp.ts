/**
 * The official `azure-iothub` service Client over AMQP (its only C2D transport) on a test
 * hub, closed after each test. The SDK's own frames, put-token and links; only where it
 * dials is the hub's: its AMQP port (the SDK always dials 5671, which one process at a time
 * may bind) and the hub's CA (the SDK passes no TLS options to its AMQP base). With the
 * C2D messages a back end builds and the feedback records its receiver reads.
 */
import { Message, NoRetry } from "azure-iot-common";
import { Client } from "azure-iothub";
import { afterEach, expect } from "vitest";
import type { EdgeHub } from "../../ts/index.js";

const closers: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close().catch(() => undefined)));
});

interface AmqpTransport {
  _getConnectionUri(): string;
  _amqp: { connect(config: Record<string, unknown>, done: unknown): void };
}

/** `Client.fromConnectionString(connectionString)` (default: the hub's own) dialling `hub`; no retries. */
export function serviceClient(hub: EdgeHub, connectionString = hub.serviceConnectionString): Client {
  const client = Client.fromConnectionString(connectionString);
  const transport = (client as unknown as { _transport: AmqpTransport })._transport;
  transport._getConnectionUri = () => `amqps://localhost:${hub.ports.amqps}`;
  const base = transport._amqp;
  const connect = base.connect.bind(base);
  base.connect = (config, done) => connect({ ...config, sslOptions: { ca: hub.caCertificate } }, done);
  client.setRetryPolicy(new NoRetry());
  closers.push(() => client.close());
  return client;
}

/** A C2D message as a back end builds it with the official SDK. */
export function c2d(body: string, messageId: string, ack?: string): Message {
  const m = new Message(body);
  m.messageId = messageId;
  m.correlationId = `c-${messageId}`;
  if (ack !== undefined) m.ack = ack;
  m.properties.add("k", "v");
  return m;
}

/**
 * Feedback records as the SDK's feedback receiver hands them over, completed as they arrive
 * (the first `abandon` batches abandoned instead, and not recorded).
 */
export async function feedbackRecords(client: Client, abandon = 0): Promise<Array<Record<string, unknown>>> {
  // The callback form: the promise form's result packs the receiver away (azure-iothub 1.16.6).
  const receiver = await new Promise<Client.ServiceReceiver>((resolve, reject) =>
    client.getFeedbackReceiver((err, r) => (err || !r ? reject(err) : resolve(r))),
  );
  const records: Array<Record<string, unknown>> = [];
  receiver.on("message", (m: Message) => {
    expect(m.contentType).toBe("application/vnd.microsoft.iothub.feedback.json");
    if (abandon-- > 0) {
      void receiver.abandon(m);
      return;
    }
    records.push(...(JSON.parse(m.getData().toString()) as Array<Record<string, unknown>>));
    void receiver.complete(m);
  });
  return records;
}
