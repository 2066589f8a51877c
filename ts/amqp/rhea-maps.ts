/**
 * rhea turns an AMQP map section (application properties, annotations) into an object by
 * assignment (`result[key] = value`), so a `__proto__` key sets that object's prototype
 * instead of being kept, and a client's `__proto__` property is lost. IoT Hub keeps it as
 * data (docs/hub.md, "Keys that name prototype members"). This makes every key an own data
 * property, as rhea does for all other keys; nothing else about the objects changes. It is
 * installed once, on rhea's shared `types` (what its message decoder calls).
 */
import rhea from "rhea";

interface RheaTypes {
  unwrap(o: unknown, leaveDescribed?: boolean): unknown;
  unwrap_map_simple(o: { value: unknown[] }): Record<string, unknown>;
}

let installed = false;

/** Installs the own-key map decoding on rhea (idempotent). */
export function keepProtoKeys(): void {
  if (installed) return;
  installed = true;
  const types = rhea.types as unknown as RheaTypes;
  types.unwrap_map_simple = (o) => {
    const elements = o.value.map((e) => types.unwrap(e, true));
    const result: Record<string, unknown> = {};
    for (let i = 0; i + 1 < elements.length; i += 2) {
      Object.defineProperty(result, elements[i] as PropertyKey, {
        value: elements[i + 1],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return result;
  };
}
