/**
 * One socket write per turn for an AMQP connection. rhea writes every frame with its own
 * `socket.write` (`Transport.write` in its transport.js, 3.0.5): the dispositions of one
 * group commit, the flow that gives the credit back, a twin answer, each a TLS record and a
 * write of its own. In a CPU profile of benches/amqp.bench.mjs the socket's `writeBuffer`
 * was a quarter of the hub's busy time, about half of it rhea's frames (docs/benchmarks.md).
 * Here the socket is corked at the first write of a turn and uncorked once the turn's
 * pending callbacks have run, so what rhea writes in that turn leaves in one write (as the
 * MQTT head writes one turn's PUBACKs together).
 */
import type { Duplex } from "node:stream";

/** Makes the writes `socket` takes in one turn go out as one (for the rest of its life). */
export function batchWrites(socket: Duplex): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  const write = socket.write;
  // rhea calls `socket.write(buffer)`; every caller of the socket is batched alike.
  socket.write = function (this: Duplex, ...args: Parameters<Duplex["write"]>): boolean {
    if (!corked && !socket.writableEnded) {
      corked = true;
      socket.cork();
      // Queued after rhea's own `_process` of this turn, which does the writing.
      process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as Duplex["write"];
}
