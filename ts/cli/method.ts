/**
 * `edgehub method invoke`: a direct method on a connected device or module, as
 * `az iot hub invoke-device-method` / `invoke-module-method`, through `POST …/methods`.
 */
import { type CommandGroup, type CommandSpec, jsonLine, UsageError } from "./command.js";
import { withClient } from "./login.js";
import { jsonOption } from "./twin.js";

const invoke: CommandSpec = {
  name: "method invoke",
  summary: "call a direct method and print the device's status and payload",
  args: [
    { name: "device-id", help: "the device" },
    { name: "method-name", help: "the method" },
  ],
  options: [
    { name: "module", value: "<module-id>", help: "call this module of the device" },
    { name: "payload", value: "<json>", help: "the method's payload (default null)" },
    {
      name: "timeout",
      value: "<seconds>",
      help: "how long the device has to answer (default 30, at most 300)",
    },
  ],
  login: true,
  notes: "Prints `status <n>` and the payload as JSON; --json prints {status, payload}.",
  async run(input, io) {
    const timeoutText = input.opt("timeout") ?? "30";
    const timeout = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || timeout < 1 || timeout > 300)
      throw new UsageError(`--timeout ${timeoutText} is not a number of seconds 1-300`, this);
    const payloadText = input.opt("payload");
    const payload = payloadText === undefined ? null : jsonOption(payloadText, "payload", this);
    const result = await withClient(input, (c) =>
      c.invokeMethod(input.args["device-id"] ?? "", input.opt("module"), {
        methodName: input.args["method-name"] ?? "",
        payload,
        responseTimeoutInSeconds: timeout,
      }),
    );
    io.out(
      input.json
        ? jsonLine(result)
        : `status ${result.status}\n${JSON.stringify(result.payload ?? null, null, 2)}\n`,
    );
  },
};

/** `edgehub method …`. */
export const methodCommands: CommandGroup = {
  name: "method",
  summary: "direct methods (as az iot hub invoke-device-method)",
  commands: [invoke],
};
