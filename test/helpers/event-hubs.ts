/**
 * The official @azure/event-hubs consumer (test/fixtures/event-hubs-consumer.mjs) as a child
 * process against a test hub, killed after each test (./process.ts): real TLS, verified
 * against the hub's CA (NODE_EXTRA_CA_CERTS), dialled at the hub's AMQP port with
 * `customEndpointAddress`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { sign } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
import { killAfterTest } from "./process.js";

/**
 * An Event Hubs SAS token for `audience` (`sb://…`) valid `secs` seconds (negative: expired),
 * signed as @azure/core-amqp signs: the `iothubowner` key's text as HMAC key.
 */
export function eventHubToken(audience: string, key: string, secs = 3600): string {
  const expiry = Math.floor(Date.now() / 1000) + secs;
  const sr = encodeURIComponent(audience);
  const sig = encodeURIComponent(sign(key, sr, expiry, "utf8"));
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${expiry}&skn=iothubowner`;
}

/** The `SharedAccessKey` of a connection string. */
export function keyOf(connectionString: string | undefined): string {
  return /SharedAccessKey=([^;]+)/.exec(connectionString ?? "")?.[1] ?? "";
}

const fixture = fileURLToPath(new URL("../fixtures/event-hubs-consumer.mjs", import.meta.url));

/** An event as the consumer received it (its `ReceivedEventData`, dates as ms). */
export interface ReceivedEvent {
  body: unknown;
  properties: Record<string, unknown>;
  offset: string;
  sequenceNumber: number;
  enqueuedTimeUtc: number;
  systemProperties: Record<string, unknown>;
  messageId?: unknown;
  correlationId?: unknown;
  contentType?: string;
}

/** The error the client surfaced: its name, code and message. */
export interface ClientError {
  name: string;
  code?: string;
  message: string;
}

/** A start position as the fixture takes it. */
export type Position =
  | "earliest"
  | "latest"
  | { sequenceNumber: number; isInclusive?: boolean }
  | { offset: string; isInclusive?: boolean }
  | { enqueuedOn: number };

/** What one command names: the consumer group, partition, position, another connection string. */
export interface Target {
  group?: string;
  partition?: string;
  position?: Position;
  connectionString?: string;
  /** The reader's owner level (Event Hubs' epoch). */
  ownerLevel?: number;
}

type Line = { id: number; result?: unknown; error?: ClientError; ready?: boolean; event?: ReceivedEvent };

/** A follow under way: `ready` once its receiver is attached, `events` as they come. */
export interface Follow {
  ready: Promise<void>;
  events: ReceivedEvent[];
  errors: ClientError[];
  /** Resolves once `n` events came (or rejects with the first error). */
  until(n: number): Promise<ReceivedEvent[]>;
  stop(): Promise<void>;
}

/** A consumer process for `hub` (default: the hub's own Event Hubs connection string). */
export class Consumer {
  readonly #child: ChildProcess;
  readonly #waiting = new Map<number, (line: Line) => void>();
  #next = 1;
  #stderr = "";

  /** @param transport `ws`: AMQP over WebSocket on the hub's HTTPS port (`$servicebus/websocket`). */
  constructor(
    hub: EdgeHub,
    connectionString = hub.eventHubConnectionString ?? "",
    transport: "tls" | "ws" = "tls",
  ) {
    const port = transport === "ws" ? hub.ports.https : hub.ports.amqps;
    this.#child = spawn(
      process.execPath,
      [fixture, connectionString, `amqps://localhost:${port}`, transport],
      {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caFile },
      },
    );
    killAfterTest(this.#child);
    this.#child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.#stderr += d;
    });
    createInterface({ input: this.#child.stdout as NodeJS.ReadableStream }).on("line", (text) => {
      const line = JSON.parse(text) as Line;
      this.#waiting.get(line.id)?.(line);
    });
  }

  /** What the child wrote on stderr (for failure messages). */
  get stderr(): string {
    return this.#stderr;
  }

  #send(cmd: Record<string, unknown>, onLine: (line: Line) => void): number {
    const id = this.#next++;
    this.#waiting.set(id, onLine);
    this.#child.stdin?.write(`${JSON.stringify({ ...cmd, id })}\n`);
    return id;
  }

  /** Runs one command; resolves with its result, rejects with the client's error. */
  #call<T>(cmd: Record<string, unknown>): Promise<T> {
    return new Promise((resolve, reject) => {
      const id = this.#send(cmd, (line) => {
        this.#waiting.delete(id);
        if (line.error) reject(Object.assign(new Error(line.error.message), line.error));
        else resolve(line.result as T);
      });
    });
  }

  /** getEventHubProperties, getPartitionIds and getPartitionProperties(partition). */
  properties(t: Target = {}): Promise<{
    hub: { name: string; createdOn: number; partitionIds: string[] };
    ids: string[];
    partition: {
      eventHubName: string;
      partitionId: string;
      beginningSequenceNumber: number;
      lastEnqueuedSequenceNumber: number;
      lastEnqueuedOffset: string;
      lastEnqueuedOnUtc: number;
      isEmpty: boolean;
    };
  }> {
    return this.#call({ op: "properties", ...t });
  }

  /** `count` events from `t.position` (a subscription closed once it has them). */
  read(t: Target, count: number): Promise<ReceivedEvent[]> {
    return this.#call({ op: "read", ...t, count });
  }

  /**
   * {@link read} with `trackLastEnqueuedEventProperties`: also the partition's last event as
   * the receiver last heard of it (`context.lastEnqueuedEventProperties`, dates as ms).
   */
  readTracked(
    t: Target,
    count: number,
  ): Promise<{
    events: ReceivedEvent[];
    last: { sequenceNumber: number; offset: string; enqueuedOn: number; retrievedOn: number };
  }> {
    return this.#call({ op: "read", ...t, count, track: true });
  }

  /** Subscribes and keeps the events coming. */
  follow(t: Target): Follow {
    const events: ReceivedEvent[] = [];
    const errors: ClientError[] = [];
    let onReady: (error?: ClientError) => void = () => {};
    let onChange: () => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      // The first error before the receiver is up fails it.
      onReady = (error) => (error ? reject(Object.assign(new Error(error.message), error)) : resolve());
    });
    const id = this.#send({ op: "follow", ...t }, (line) => {
      if (line.ready) onReady();
      if (line.event) events.push(line.event);
      if (line.error) {
        errors.push(line.error);
        onReady(line.error);
      }
      onChange();
    });
    return {
      ready,
      events,
      errors,
      until: (n) =>
        new Promise((resolve, reject) => {
          const check = () => {
            if (errors[0]) reject(Object.assign(new Error(errors[0].message), errors[0]));
            else if (events.length >= n) resolve(events.slice(0, n));
            else return;
            onChange = () => {};
          };
          onChange = check;
          check();
        }),
      stop: () => this.#call({ op: "stop", target: id }),
    };
  }

  /** Closes the clients (the connection to the hub). */
  close(): Promise<unknown> {
    return this.#call({ op: "close" });
  }
}
