/**
 * The AMQP head, loaded with the hub's first AMQP connection: rhea and the head's modules
 * cost resident memory (`benches/rss.bench.mjs`) that a hub whose devices all speak MQTT
 * never needs. Connections that come while it loads wait in their sockets (nothing reads
 * them yet) and are taken in the order they came.
 */
import type net from "node:net";
import type { Duplex } from "node:stream";
import type { PeerCertificate } from "../auth/authenticator.js";
import type { AmqpHeadDeps } from "./head.js";

/** Runs an AMQP connection on `stream`, which came in on `socket`. */
export type AmqpAccept = (stream: Duplex, socket: net.Socket, peer?: PeerCertificate) => void;

/**
 * {@link AmqpAccept} of the head made from `deps`, imported on first use; `failed` hears why
 * it could not be loaded (each waiting connection is then closed).
 */
export function lazyAmqpHead(deps: AmqpHeadDeps, failed: (err: Error) => void): AmqpAccept {
  let head: AmqpAccept | undefined;
  let loading: Promise<AmqpAccept> | undefined;
  return (stream, socket, peer) => {
    if (head) return head(stream, socket, peer);
    loading ??= import("./head.js").then((m) => {
      head = m.amqpHead(deps);
      return head;
    });
    loading.then(
      (accept) => {
        if (!stream.destroyed) accept(stream, socket, peer);
      },
      (err: unknown) => {
        failed(err as Error);
        stream.destroy();
      },
    );
  };
}
