// A null MQTT sink over TLS: acks CONNECT and QoS 1 PUBLISH at once and keeps nothing.
// The ingest benchmark runs its load generator against it to show the generator is not
// the bottleneck.
import { readFileSync } from "node:fs";
import tls from "node:tls";
import mqtt from "mqtt-packet";

const [port, certFile, keyFile] = process.argv.slice(2);
const server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (socket) => {
  const parser = mqtt.parser({ protocolVersion: 4 });
  parser.on("packet", (p) => {
    if (p.cmd === "connect")
      socket.write(mqtt.generate({ cmd: "connack", returnCode: 0, sessionPresent: false }));
    else if (p.cmd === "publish" && p.qos === 1)
      socket.write(mqtt.generate({ cmd: "puback", messageId: p.messageId }));
    else if (p.cmd === "pingreq") socket.write(mqtt.generate({ cmd: "pingresp" }));
  });
  parser.on("error", () => socket.destroy());
  socket.on("data", (d) => parser.parse(d));
  socket.on("error", () => undefined);
});
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("ready\n"));
