/** The durable message log: queues with offsets, TTL, quota, and a small KV space. */
export type { StoredMessage } from "./codec.js";
export {
  type AppendMessage,
  type AppendPart,
  DURABILITIES,
  type Durability,
  type KvEntry,
  type KvPut,
  type KvSpace,
  MessageStore,
  type QueueStats,
  type ReadOptions,
  type StoreOptions,
  type StoreStats,
} from "./message-store.js";
