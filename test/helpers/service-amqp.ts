/**
 * The official `azure-iothub` service Client over AMQP (its only C2D transport) on a test
 * hub, closed after each test. The SDK's own frames, put-token and links; only where it
 * dials is the hub's: its AMQP port (the SDK always dials 5671, which one process at a time
 * may bind) and the hub's CA (the SDK passes no TLS options to its AMQP base).
 */
import { NoRetry } from "azure-iot-common";
import { Client } from "azure-iothub";
import { afterEach } from "vitest";
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
