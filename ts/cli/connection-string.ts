/**
 * `edgehub connection-string show [--default-eventhub]`, as `az iot hub connection-string
 * show`: the hub's service connection string, or with `--default-eventhub` the connection
 * string of its Event Hubs–compatible endpoint (a root's; ts/amqp/event-hub), from the
 * service API (`GET /edge/endpoints`).
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type CommandGroup, type CommandSpec, jsonLine } from "./command.js";
import { withClient } from "./login.js";

const show: CommandSpec = {
  name: "connection-string show",
  summary: "print the hub's service connection string, or its Event Hubs-compatible endpoint's",
  options: [
    {
      name: "default-eventhub",
      help: "the Event Hubs-compatible endpoint's (@azure/event-hubs EventHubConsumerClient), a root hub's",
    },
  ],
  login: true,
  notes:
    "Prints HostName=<hub>;SharedAccessKeyName=iothubowner;SharedAccessKey=…\n" +
    "--default-eventhub: Endpoint=sb://<hub>/;SharedAccessKeyName=iothubowner;SharedAccessKey=…;EntityPath=<event hub>\n" +
    "The endpoint is on the AMQP listener (listen.amqps, 5671 by default): a client on another port passes\n" +
    "customEndpointAddress amqps://<hub>:<port>, and trusts the hub's CA (NODE_EXTRA_CA_CERTS=<dataDir>/certs/ca.pem).\n" +
    "--json: {connectionString} (with --default-eventhub also name, consumerGroups, customEndpointAddress).",
  async run(input, io) {
    const eventHub = input.flag("default-eventhub");
    const answer = await withClient(input, async (client) => {
      const endpoints = await client.endpoints();
      if (!eventHub) return { connectionString: client.connectionString };
      if (!endpoints.eventHub)
        throw new EdgeHubError(
          ErrorCodes.INVALID_ARGUMENT,
          "this hub has a parent: its devices' telemetry is read at the root hub's Event Hubs-compatible endpoint",
        );
      if (endpoints.amqps === 0)
        io.err(
          "edgehub: the AMQP listener is off (listen.amqps false): consumers cannot reach the endpoint\n",
        );
      return {
        ...endpoints.eventHub,
        customEndpointAddress: `amqps://${endpoints.hostname}:${endpoints.amqps}`,
      };
    });
    io.out(input.json ? jsonLine(answer) : `${answer.connectionString}\n`);
  },
};

/** `edgehub connection-string …`. */
export const connectionStringCommands: CommandGroup = {
  name: "connection-string",
  summary: "the hub's connection strings (as az iot hub connection-string)",
  commands: [show],
};
