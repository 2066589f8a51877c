// aedes (in-memory persistence, as it ships) behind TLS, for the ingest benchmark.
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { Aedes } from "aedes";

const [port, certFile, keyFile] = process.argv.slice(2);
const broker = await Aedes.createBroker();
const server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, broker.handle);
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("ready\n"));
