/** Module clients as IoT Edge starts them: `ModuleClient.fromEnvironment`. */
import { ModuleClient } from "azure-iot-device";
import { Amqp } from "azure-iot-device-amqp";
import { Mqtt } from "azure-iot-device-mqtt";

/**
 * A `ModuleClient.fromEnvironment` client, with `EdgeHubConnectionString` and
 * `EdgeModuleCACertificateFile` set for that call only (the SDK reads them there).
 */
export async function moduleFromEnvironment(
  connectionString: string,
  caFile: string,
  transport: "mqtt" | "amqp" = "mqtt",
): Promise<ModuleClient> {
  const saved = { cs: process.env.EdgeHubConnectionString, ca: process.env.EdgeModuleCACertificateFile };
  process.env.EdgeHubConnectionString = connectionString;
  process.env.EdgeModuleCACertificateFile = caFile;
  try {
    return await ModuleClient.fromEnvironment(transport === "mqtt" ? Mqtt : Amqp);
  } finally {
    if (saved.cs === undefined) delete process.env.EdgeHubConnectionString;
    else process.env.EdgeHubConnectionString = saved.cs;
    if (saved.ca === undefined) delete process.env.EdgeModuleCACertificateFile;
    else process.env.EdgeModuleCACertificateFile = saved.ca;
  }
}
