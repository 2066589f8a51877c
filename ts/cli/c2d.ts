/**
 * `edgehub c2d send`: a cloud-to-device message, as `az iot device c2d-message send`, through
 * `POST /devices/{id}/messages/deviceBound` with the properties as `iothub-app-*` headers.
 */
import { type CommandGroup, type CommandSpec, jsonLine, printable, UsageError } from "./command.js";
import { withClient } from "./login.js";

/** An HTTP token (RFC 9110): what a property name must be to travel as a header. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Header values: visible characters and spaces, no controls. */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Parses `k=v,k2=v2`; throws a usage error for an entry that cannot travel. */
export function parseProps(text: string, spec: CommandSpec): Map<string, string> {
  const props = new Map<string, string>();
  for (const entry of text.split(",")) {
    if (entry.trim() === "") continue;
    const eq = entry.indexOf("=");
    const key = (eq < 0 ? entry : entry.slice(0, eq)).trim();
    const value = eq < 0 ? "" : entry.slice(eq + 1);
    if (!TOKEN.test(key))
      throw new UsageError(
        `--props: ${JSON.stringify(key)} is not a property name (letters, digits, -._~…)`,
        spec,
      );
    if (!VALUE.test(value)) throw new UsageError(`--props: the value of ${key} has control characters`, spec);
    props.set(key, value);
  }
  return props;
}

const send: CommandSpec = {
  name: "c2d send",
  summary: "send a cloud-to-device message (kept for the device until it takes it)",
  args: [
    { name: "device-id", help: "the device" },
    { name: "body", help: "the message body, as text" },
  ],
  options: [
    {
      name: "props",
      value: "<k=v,…>",
      help: "application properties (names travel lower-cased, as over IoT Hub's HTTP)",
    },
  ],
  login: true,
  async run(input, io) {
    const deviceId = input.args["device-id"] ?? "";
    const props = parseProps(input.opt("props") ?? "", this);
    await withClient(input, (c) => c.sendC2D(deviceId, Buffer.from(input.args.body ?? "", "utf8"), props));
    io.out(input.json ? jsonLine({ deviceId, sent: true }) : `${printable(deviceId)}: sent\n`);
  },
};

/** `edgehub c2d …`. */
export const c2dCommands: CommandGroup = {
  name: "c2d",
  summary: "cloud-to-device messages (as az iot device c2d-message)",
  commands: [send],
};
