/**
 * Every config key, declared once (./declare.ts): IoT Edge's key names where one exists,
 * defaults for an embedded root hub. `edgehub start --help` prints this table; the checks
 * that span keys (a parent's credentials, the manifest's layers) are in ./config.ts.
 */
import * as v from "valibot";
import { DURABILITIES } from "../store/message-store.js";
import { group, integer, key, kind, optionalKey, requiredKey } from "./declare.js";
import { limitsSchema } from "./limits.js";

const dnsName = kind(v.pipe(v.string(), v.regex(/^[A-Za-z0-9.-]{1,253}$/)), "a DNS name");
const path = kind(v.pipe(v.string(), v.minLength(1)), "a path");
const text = kind(v.pipe(v.string(), v.minLength(1)), "a non-empty string");
const port = integer(0, 65535, "a port number 0-65535");
const positive = integer(1, Number.MAX_SAFE_INTEGER, "a positive integer");
/** A listener's port, or `false`: that listener off (`listen.amqps`). */
const portOrOff = kind(
  v.union([v.literal(false), v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535))]),
  "a port number 0-65535 or false",
);
const ttl = kind(
  v.pipe(
    v.number(),
    v.integer(),
    v.check((n) => n === -1 || n >= 1),
  ),
  "-1 or a positive integer",
);

/** A route as IoT Edge writes it: the text, or `{route, priority, timeToLiveSecs}`. */
const routeObject = group(
  {
    route: requiredKey(
      kind(v.string(), "a route string"),
      "FROM … [WHERE …] INTO … (IoT Edge's route grammar).",
    ),
    priority: optionalKey(
      integer(0, 9, "an integer 0-9"),
      "0 is the highest, 9 the lowest; without one the route comes after all of them.",
    ),
    timeToLiveSecs: optionalKey(ttl, "TTL of the messages it stores; the store's when absent."),
  },
  "a route string or {route, priority, timeToLiveSecs}",
);

/** One route: a string, or the object form (picked by the input's form, so errors name the field). */
export const routeSchema = v.lazy((input: unknown) =>
  typeof input === "string" ? v.string() : routeObject,
) as v.GenericSchema<string | v.InferInput<typeof routeObject>, string | v.InferOutput<typeof routeObject>>;

/** Routes by name. Names are input: ./config.ts walks them itself so `__proto__` is a name too. */
const routes = { schema: v.record(v.string(), routeSchema, "must be an object of named routes"), what: "" };

/** Store and forward, as IoT Edge's `$edgeHub` desired properties spell it. */
export const storeAndForwardSchema = group({
  timeToLiveSecs: key(ttl, 7200, "How long a message is kept for its endpoint; -1 keeps it forever."),
  storeLimits: v.pipe(
    v.optional(
      group({
        maxSizeBytes: key(positive, 10 * 2 ** 30, "Quota of live message bytes on disk."),
        whenFull: key(
          kind(v.picklist(["reject", "drop-oldest"]), '"reject" or "drop-oldest"'),
          "reject",
          "At the quota: reject (the device's message is refused, nothing stored is lost) or drop-oldest.",
        ),
        maxSizeBytesPerIdentity: key(
          integer(0, Number.MAX_SAFE_INTEGER, "0 (off) or a positive integer"),
          0,
          "Live bytes one device or module may have stored; past it its messages are refused (STORE_SHARE_EXCEEDED) while others are accepted.",
        ),
      }),
      {},
    ),
    v.description("The store's quota."),
  ),
});

/** The `$edgeHub` desired properties this hub reads (unknown ones are IoT Edge's, ignored). */
const desiredSchema = v.looseObject(
  {
    schemaVersion: v.optional(v.string()),
    routes: v.optional(routes.schema),
    storeAndForwardConfiguration: v.optional(storeAndForwardSchema),
  },
  "must be an object",
);

/** A deployment manifest's `$edgeHub` section. */
const edgeHubSection = v.looseObject(
  { "properties.desired": v.optional(desiredSchema) },
  "must be an object",
);

/** How to reach the parent and forward to it. */
export const parentSchema = group({
  type: optionalKey(
    kind(v.picklist(["edgehub", "iothub", "mqtt"]), '"edgehub", "iothub" or "mqtt"'),
    "What the parent is. edgehub: a hub of this project (every message carries its forwarder id $.fid, the parent's filter for resends). " +
      "iothub: Azure IoT Hub or Microsoft's IoT Edge (nothing added the device did not set). mqtt: any MQTT broker. " +
      "Default: iothub for an Azure IoT Hub name (*.azure-devices.net, .cn, .us, .de), edgehub otherwise.",
  ),
  hostname: requiredKey(dnsName, "The parent's host."),
  hubHostname: optionalKey(
    dnsName,
    "The IoT hub every token of the hierarchy names (Azure IoT Hub, or the root hub); the parent's hostname by default.",
  ),
  port: key(port, 8883, "MQTT over TLS."),
  httpsPort: key(port, 443, "HTTPS, for the device scope sync."),
  deviceId: requiredKey(
    text,
    "This hub's device id on its parent (an edge device there); for mqtt, the client id.",
  ),
  sharedAccessKey: optionalKey(
    kind(
      v.pipe(
        v.string(),
        v.check((s) => Buffer.from(s, "base64").length >= 16),
      ),
      "base64 of at least 16 bytes",
    ),
    "The device's key; or certFile + keyFile.",
  ),
  certFile: optionalKey(path, "X.509 login instead of a key: the certificate."),
  keyFile: optionalKey(path, "X.509 login: the certificate's key."),
  caFile: optionalKey(path, "CA of the parent's server certificate; the system's CAs if absent."),
  username: optionalKey(text, "mqtt only: the login."),
  password: optionalKey(text, "mqtt only: the login's password."),
  topic: key(
    text,
    "edgehub/{deviceId}/messages/events",
    "mqtt only: the topic template ({deviceId}, {moduleId}, {outputName}).",
  ),
  window: key(
    // Half of the link's 32,767 packet ids (the SDK's 1..0x7FFF, `mqtt-client.ts:PACKET_IDS`),
    // so its twin and method traffic always finds a free one.
    integer(1, 16_384, "a positive integer up to 16384"),
    100,
    "Unacknowledged messages per link.",
  ),
  order: key(
    kind(v.picklist(["stored", "live-first"]), '"stored" or "live-first"'),
    "stored",
    "stored: in stored order. live-first: new messages first, the backlog behind.",
  ),
  maxMessagesPerSec: optionalKey(
    positive,
    "Cap on messages per second sent upstream (slow uplinks); unlimited if absent.",
  ),
  scopeRefreshSecs: key(positive, 3600, "How often the device scope is fetched again."),
  maxBackoffMs: key(
    positive,
    1000,
    "Longest wait between reconnect attempts of the hub's own link, in ms (jittered).",
  ),
  keepaliveSecs: key(
    positive,
    30,
    "MQTT keepalive of the links, in seconds: a link gone silent is noticed in about 1.5x this.",
  ),
  ackTimeoutMs: key(
    positive,
    15_000,
    "A link whose oldest publish waits longer than this for its PUBACK is dropped and reopened.",
  ),
});

/** An Event Hubs name (hub or consumer group): letters, digits, `.`, `_`, `-`, first a letter or digit. */
const eventHubName = kind(
  v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/)),
  "1-50 letters, digits, '.', '_' or '-' (first a letter or digit)",
);
/** The event hub's own name: not the first segment of IoT Hub's other AMQP addresses. */
const entityName = kind(
  v.pipe(
    eventHubName.schema,
    v.check((n) => !["devices", "messages"].includes(n.toLowerCase())),
  ),
  `${eventHubName.what}, not "devices" or "messages"`,
);

/** The Event Hubs–compatible endpoint of a root hub (docs/amqp.md). */
export const eventHubSchema = group({
  name: optionalKey(
    entityName,
    "The event hub's name (EntityPath): the first label of hostname by default, as IoT Hub names its built-in endpoint.",
  ),
  consumerGroups: key(
    kind(v.pipe(v.array(eventHubName.schema), v.maxLength(32)), "a list of at most 32 consumer group names"),
    () => [],
    "Consumer groups besides $Default, which is always there; a reader of another is refused.",
  ),
  maxReceivers: key(
    integer(1, 4096, "an integer 1-4096"),
    64,
    "Event readers (receiver links) open at once on the whole hub; one more is refused.",
  ),
});

/** The default port of the operators' listener. */
export const DEFAULT_METRICS_PORT = 9600;

const metricsGroup = group(
  {
    host: key(kind(v.pipe(v.string(), v.minLength(1)), "an address"), "127.0.0.1", "Interface to bind."),
    port: key(
      port,
      DEFAULT_METRICS_PORT,
      "0 picks a free port. When the default port is taken the hub starts without the listener (and logs why); a port given here that cannot be bound fails the start.",
    ),
  },
  "{host, port} or false",
);

/** `false`, or the listener's address (picked by the input's form, so errors name the field). */
const metrics = v.lazy((input: unknown) =>
  input === false ? v.literal(false) : metricsGroup,
) as v.GenericSchema<false | v.InferInput<typeof metricsGroup>, false | v.InferOutput<typeof metricsGroup>>;

/** The whole configuration. */
export const hubConfigSchema = group({
  hostname: optionalKey(
    dnsName,
    "The hub's hostname: in tokens' audience, usernames and the server certificate. Default: this machine's hostname.",
  ),
  dataDir: key(path, "./edgehub-data", "Where the store, keys and certificates live."),
  listen: v.pipe(
    v.optional(
      group({
        host: key(kind(v.string(), "an address"), "0.0.0.0", "Interface to bind (all by default)."),
        mqtts: key(port, 8883, "MQTT over TLS; 0 picks a free port."),
        https: key(
          port,
          8443,
          "HTTPS: the service API, and MQTT and AMQP over WebSocket; 0 picks a free port.",
        ),
        amqps: key(
          portOrOff,
          5671,
          "AMQP 1.0 over TLS (IoT Hub's port; docs/amqp.md says what it serves); 0 picks a free port, false turns it off.",
        ),
      }),
      {},
    ),
    v.description("The device-facing listeners."),
  ),
  tls: v.pipe(
    v.optional(
      group({
        certFile: requiredKey(path, "The server certificate (chain) in PEM."),
        keyFile: requiredKey(path, "Its key."),
        caFile: requiredKey(path, "The CA clients trust."),
      }),
    ),
    v.description("Own TLS material; without it a development CA is generated under <dataDir>/certs."),
  ),
  storeAndForwardConfiguration: v.pipe(
    v.optional(storeAndForwardSchema, {}),
    v.description(
      "Store and forward (IoT Edge's key); the manifest's $edgeHub gives it too, these keys win.",
    ),
  ),
  eventsRetentionSecs: key(
    positive,
    86_400,
    "How long a root hub keeps device-to-cloud messages in its events queue.",
  ),
  eventHub: v.pipe(
    v.optional(eventHubSchema, {}),
    v.description(
      "The Event Hubs–compatible endpoint (AMQP, a root hub's): consumers read the events queue with @azure/event-hubs.",
    ),
  ),
  trustedDeviceCaFiles: key(
    kind(v.array(v.string()), "a list of paths"),
    () => [],
    "PEM files of CAs whose certificates authenticate certificateAuthority devices (CN = device id).",
  ),
  allowNesting: key(
    kind(v.boolean(), "true or false"),
    true,
    "Edge devices may be children of other edge devices (nested gateways), as on IoT Hub.",
  ),
  parent: v.pipe(
    v.optional(parentSchema),
    v.description("The hub's parent: without one the hub is a root (it plays the cloud)."),
  ),
  routes: optionalKey(
    routes,
    "Routes by name (IoT Edge's $edgeHub routes): a route string or {route, priority, timeToLiveSecs}.",
  ),
  $edgeHub: optionalKey(
    { schema: edgeHubSection, what: "a deployment manifest's $edgeHub section" },
    'An IoT Edge deployment manifest\'s $edgeHub section ({"properties.desired": {routes, storeAndForwardConfiguration}}); ' +
      "also read from a whole manifest's modulesContent. Keys given at the top level win.",
  ),
  modulesContent: optionalKey(
    {
      schema: v.looseObject({ $edgeHub: v.optional(edgeHubSection) }),
      what: "a deployment manifest's modulesContent",
    },
    "A whole deployment manifest's modulesContent; only its $edgeHub is read.",
  ),
  logLevel: key(
    kind(v.picklist(["debug", "info", "warn", "error"]), "debug, info, warn or error"),
    "info",
    "Least severe log line written.",
  ),
  durability: key(
    kind(v.picklist(DURABILITIES), DURABILITIES.map((d) => `"${d}"`).join(" or ")),
    "fsync",
    "When a device's message is acknowledged: \"fsync\" once the store's WAL is synced (survives a power loss); " +
      '"wal" once it is written to the WAL without fsync (survives a killed hub, not a power loss; IoT Edge\'s own default; less CPU per message).',
  ),
  limits: v.pipe(
    v.optional(limitsSchema, {}),
    v.description("Connections and per-socket deadlines, sized for a small board by default."),
  ),
  metrics: key(
    { schema: metrics, what: "{host, port} or false" },
    () => ({}),
    "The operators' listener: /metrics, /healthz, /readyz and the status page, without credentials; false turns it off.",
  ),
});

/** `storeAndForwardConfiguration`'s input. */
export type StoreAndForwardInput = v.InferInput<typeof storeAndForwardSchema>;

/** The `$edgeHub` desired properties this hub reads. */
export type EdgeHubDesired = v.InferInput<typeof desiredSchema>;
