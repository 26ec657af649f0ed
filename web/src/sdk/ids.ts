// Ids as the protocol writes them (docs/protocol.md, Identities).

/** A new call id: 32 lowercase hex digits, 128 random bits. */
export function newSid(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `s` is a user, robot or call id: 32 lowercase hex digits. */
export function isId(s: string): boolean {
  return /^[0-9a-f]{32}$/.test(s);
}

/** A device name: `[a-z0-9_-]{1,32}`. */
export function isDevice(s: string): boolean {
  return /^[a-z0-9_-]{1,32}$/.test(s);
}

/** The user or robot id of a client id (`<id>` or `<id>:<device>`). */
export function idOf(clientId: string): string {
  return clientId.split(":")[0];
}
