// A null MQTT sink over TLS: acks CONNECT and QoS 1 PUBLISH and keeps nothing. The ingest
// benchmark runs its load generator against it to show the generator is not the bottleneck.
// With a fourth argument (a file path) it is the durable floor instead: each PUBLISH's
// payload is appended to that file and PUBACKed only after an fdatasync, with group
// commit (what arrives during one sync shares the next), the least any broker that acks
// after fsync can do on this disk.
import { closeSync, fdatasync, openSync, readFileSync, write } from "node:fs";
import tls from "node:tls";
import mqtt from "mqtt-packet";

const [port, certFile, keyFile, syncFile] = process.argv.slice(2);
const fd = syncFile ? openSync(syncFile, "a") : undefined;
let waiting = []; // [socket, messageId, payload] awaiting the next sync
let syncing = false;

function commit() {
  if (syncing || waiting.length === 0) return;
  syncing = true;
  const batch = waiting;
  waiting = [];
  write(fd, Buffer.concat(batch.map((w) => w[2])), (err) => {
    if (err) throw err;
    fdatasync(fd, (err2) => {
      if (err2) throw err2;
      for (const [socket, messageId] of batch) socket.write(mqtt.generate({ cmd: "puback", messageId }));
      syncing = false;
      commit();
    });
  });
}

const server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (socket) => {
  const parser = mqtt.parser({ protocolVersion: 4 });
  parser.on("packet", (p) => {
    if (p.cmd === "connect")
      socket.write(mqtt.generate({ cmd: "connack", returnCode: 0, sessionPresent: false }));
    else if (p.cmd === "publish" && p.qos === 1) {
      if (fd === undefined) socket.write(mqtt.generate({ cmd: "puback", messageId: p.messageId }));
      else {
        waiting.push([socket, p.messageId, p.payload]);
        setImmediate(commit);
      }
    } else if (p.cmd === "pingreq") socket.write(mqtt.generate({ cmd: "pingresp" }));
  });
  parser.on("error", () => socket.destroy());
  socket.on("data", (d) => parser.parse(d));
  socket.on("error", () => undefined);
});
process.on("SIGTERM", () => {
  if (fd !== undefined) closeSync(fd);
  process.exit(0);
});
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("ready\n"));
