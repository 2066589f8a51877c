#!/usr/bin/env node
/**
 * A device on an edgehub with Microsoft's official Node SDK (`azure-iot-device`,
 * `azure-iot-device-mqtt`), unchanged: the README's first five minutes run it.
 *
 *   node examples/device.mjs "<connection string>" [<CA file>]
 *
 * The connection string is what `edgehub device connection-string <id>` prints; the CA file
 * is the hub's (default `edgehub-data/certs/ca.pem`, what `edgehub start` made on its first
 * start). The device sends a temperature now and then every `interval` seconds (10, or the
 * desired property `interval`), reports its firmware version, answers the direct method
 * `reboot`, and prints the cloud-to-device messages and desired changes it gets, until
 * Ctrl-C. Outside a clone of edgehub: `npm install azure-iot-device azure-iot-device-mqtt`.
 */
import { readFileSync } from "node:fs";
// The SDK packages are CommonJS: their exports come through the default import.
import deviceSdk from "azure-iot-device";
import mqttTransport from "azure-iot-device-mqtt";

const { Client, Message } = deviceSdk;
const { Mqtt } = mqttTransport;

const [connectionString, caFile = "edgehub-data/certs/ca.pem"] = process.argv.slice(2);
if (!connectionString?.includes("DeviceId=")) {
  process.stderr.write('usage: node examples/device.mjs "<connection string>" [<CA file>]\n');
  process.exit(2);
}
const say = (line) => process.stdout.write(`device: ${line}\n`);

const client = Client.fromConnectionString(connectionString, Mqtt);
await client.setOptions({ ca: readFileSync(caFile, "utf8") });
await client.open();
say("connected");

// Direct methods: `edgehub method invoke <id> reboot --payload '{"delay":5}'`.
client.onDeviceMethod("reboot", (request, response) => {
  say(`method reboot ${JSON.stringify(request.payload)}`);
  response.send(200, { rebooting: true, delay: request.payload?.delay ?? 0 }, () => undefined);
});

// Cloud-to-device messages: `edgehub c2d send <id> "open the valve" --props priority=high`.
client.on("message", (message) => {
  const props = message.properties.propertyList.map((p) => `${p.key}=${p.value}`).join(" ");
  say(`c2d ${message.data.toString()}${props ? ` [${props}]` : ""}`);
  client.complete(message, () => undefined);
});

// Telemetry now and every `interval` seconds: `edgehub monitor` shows it.
let intervalSecs = 10;
let sent = 0;
let timer;
const send = async () => {
  sent += 1;
  const body = JSON.stringify({ temperature: 21.5, n: sent });
  await client.sendEvent(new Message(body));
  say(`sent ${body}`);
};
const schedule = () => {
  clearInterval(timer);
  timer = setInterval(() => send().catch((err) => say(`send failed: ${err.message}`)), intervalSecs * 1000);
};

// The twin: report the firmware; `edgehub twin update <id> --desired '{"interval":5}'` changes the interval.
const twin = await client.getTwin();
twin.properties.reported.update({ firmware: "1.0.0" }, (err) => {
  if (err) say(`report failed: ${err.message}`);
});
twin.on("properties.desired", (desired) => {
  const { $version, ...changes } = desired;
  if (Object.keys(changes).length === 0) return;
  say(`desired ${JSON.stringify(changes)} (version ${$version})`);
  if (typeof changes.interval === "number" && changes.interval > 0) {
    intervalSecs = changes.interval;
    schedule();
  }
});

await send();
schedule();

const stop = async () => {
  clearInterval(timer);
  await client.close();
  say("closed");
  process.exit(0);
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
