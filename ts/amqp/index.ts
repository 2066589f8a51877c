/**
 * The AMQP head: IoT Hub's AMQP 1.0 for devices and modules, on rhea, a peer of the MQTT
 * head (../protocol/) under the same hub context. docs/amqp.md says what it serves.
 */
export { AmqpConnection, MAX_FRAME_BYTES } from "./connection.js";
export { FrameGuard } from "./frame-guard.js";
export { type AmqpHeadDeps, amqpHead } from "./head.js";
