// The session's MQTT connection over WebSocket (mqtt.js): one at a time,
// replaced by a takeover when the access token is renewed, with every
// subscription restored on a new session.

import mqtt from "mqtt";
import type { MqttClient } from "mqtt";

export interface Identity {
  url: string;
  clientId: string;
  username: string;
}

/** A connection, and whether a newer one is replacing it. */
interface Conn {
  client: MqttClient;
  /** A takeover began: its close is expected, not a drop. */
  retiring: boolean;
  /** Resolves once a newer connection took this one's place. */
  retired: Promise<void>;
  retire: () => void;
  /** Called when its login is refused for its credentials. */
  whenRefused?: () => void;
}

/** How a takeover went. */
export type Takeover = "up" | "refused" | "timeout" | "closed";

/** How long a takeover waits for the new connection before it is retried later. */
const TAKEOVER_MS = 10_000;

/**
 * A WebSocket that drops a write once it is closing, as the browser does,
 * but without the browser's console error. mqtt.js writes on its own time
 * (a PUBACK a timer later), so a write can race the broker's close of a
 * connection taken over or past its token; what it carried is done again
 * on the next connection (QoS 1, and `Link.live`).
 */
function quietWebSocket(url: string, protocols: string[]): WebSocket {
  const socket = new WebSocket(url, protocols);
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) return;
    send(data);
  };
  return socket;
}

export class Link {
  private conn: Conn;
  /** The connection a takeover is bringing up. */
  private pending?: Conn;
  /** The takeover under way, if any. */
  private takeover?: Promise<Takeover>;
  /** Subscriptions, restored when a connection starts a new session. */
  private readonly filters = new Set<string>();
  private closed = false;

  constructor(
    private readonly who: Identity,
    private password: string,
    private readonly onMessage: (topic: string, payload: string) => void,
    private readonly onConnection: (connected: boolean) => void,
    /** A login refused for its credentials (an expired token, say). */
    private readonly onRefused: () => void,
    /** A publish sent again on a new connection: the broker may have had it. */
    private readonly onResent: (topic: string) => void,
  ) {
    this.conn = this.open();
  }

  private open(): Conn {
    const client = mqtt.connect(this.who.url, {
      clientId: this.who.clientId,
      username: this.who.username,
      password: this.password,
      protocolVersion: 4,
      // A persistent session: invites and commands sent while the
      // connection is replaced wait for it.
      clean: false,
      keepalive: 20,
      reconnectPeriod: 1000,
      // "Server unavailable" is worth another try (docs/protocol.md).
      reconnectOnConnackError: true,
      connectTimeout: 10_000,
      createWebsocket: quietWebSocket,
    });
    let retire = () => {};
    const retired = new Promise<void>((resolve) => (retire = resolve));
    const conn: Conn = { client, retiring: false, retired, retire };
    client.on("connect", (connack) => {
      if (conn !== this.conn) return;
      this.onConnection(true);
      if (!connack.sessionPresent) {
        for (const filter of this.filters) void client.subscribeAsync(filter, { qos: 1 }).catch(() => {});
      }
    });
    client.on("close", () => {
      if (conn === this.conn && !conn.retiring && !this.closed) this.onConnection(false);
    });
    client.on("error", (e) => {
      // 4: bad user name or password (the token expired); 5: not authorized.
      const code = (e as { code?: unknown }).code;
      if (code !== 4 && code !== 5) return;
      client.options.reconnectPeriod = 0;
      conn.whenRefused?.();
      if (conn === this.conn) this.onRefused();
    });
    // Until the broker closes it, a replaced connection still delivers.
    client.on("message", (topic, payload) => {
      if (!this.closed) this.onMessage(topic, new TextDecoder().decode(payload));
    });
    return conn;
  }

  /**
   * Runs `op` on the current connection, never on one a takeover is
   * replacing. Should a takeover begin before `op` completes, the broker
   * closes the old connection under it (mqtt.js fails a subscribe there
   * with "Connection closed", and never acknowledges a publish), so it is
   * run again on the new one. A publish may then arrive twice, as QoS 1
   * allows.
   */
  private async live<T>(op: (client: MqttClient) => Promise<T>, topic?: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      await this.settled();
      const conn = this.conn;
      if (attempt > 0 && topic) this.onResent(topic);
      const done = op(conn.client).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
      const outcome = await Promise.race([done, conn.retired.then(() => undefined)]);
      if (outcome && "value" in outcome) return outcome.value;
      await this.settled();
      if (outcome === undefined || conn !== this.conn) continue;
      throw outcome.error;
    }
  }

  /** Once no takeover is under way. */
  private async settled(): Promise<void> {
    while (this.takeover) await this.takeover;
  }

  /** Whether the broker granted `filter`. */
  async subscribe(filter: string): Promise<boolean> {
    // Held from now, so an unsubscribe meanwhile undoes it.
    this.filters.add(filter);
    try {
      await this.live((c) => c.subscribeAsync(filter, { qos: 1 }));
    } catch (e) {
      this.filters.delete(filter);
      // mqtt.js rejects a refusal (a SUBACK failure code) with its code.
      if (typeof (e as { code?: unknown }).code === "number") return false;
      throw e;
    }
    return true;
  }

  /** Drops a subscription this link holds (others are no-ops). */
  async unsubscribe(filter: string): Promise<void> {
    if (!this.filters.delete(filter)) return;
    await this.live((c) => c.unsubscribeAsync(filter));
  }

  /** Publishes at QoS 1 and waits for the broker's PUBACK. */
  async publish(topic: string, payload: unknown, retain = false): Promise<void> {
    const text = typeof payload === "string" ? payload : JSON.stringify(payload);
    await this.live((c) => c.publishAsync(topic, text, { qos: 1, retain }), topic);
  }

  /**
   * A new connection with `password` takes the old one's place (the
   * broker closes the old one; presence sees no gap); the old one is then
   * retired, and what was in flight on it is done again on the new one.
   * "timeout" if the new connection did not come up in time (it keeps
   * trying).
   */
  async renew(password: string): Promise<Takeover> {
    const takeover = this.takeOver(password);
    this.takeover = takeover;
    try {
      return await takeover;
    } finally {
      this.takeover = undefined;
    }
  }

  private async takeOver(password: string): Promise<Takeover> {
    if (this.closed) return "closed";
    this.password = password;
    const old = this.conn;
    old.retiring = true;
    old.client.options.reconnectPeriod = 0;
    const next = this.open();
    this.pending = next;
    const how = await new Promise<Takeover>((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), TAKEOVER_MS);
      next.whenRefused = () => {
        clearTimeout(timer);
        resolve("refused");
      };
      next.client.once("connect", (connack) => {
        clearTimeout(timer);
        // The session is kept across a takeover; should it be gone, its
        // subscriptions are made again.
        if (!connack.sessionPresent) {
          for (const f of this.filters) void next.client.subscribeAsync(f, { qos: 1 }).catch(() => {});
        }
        resolve("up");
      });
    });
    this.pending = undefined;
    if (this.closed || how === "refused") {
      next.client.end(true);
      old.retiring = false;
      return this.closed ? "closed" : how;
    }
    // Up, or still trying: either way the newer connection is the one.
    // Still trying is a drop: the old one closes without a successor, as
    // the broker sees it.
    this.conn = next;
    this.onConnection(how === "up");
    old.retire();
    old.client.end(true);
    return how;
  }

  /** Sends DISCONNECT and closes (a takeover under way too). */
  async close(): Promise<void> {
    this.closed = true;
    this.pending?.client.end(true);
    const { client } = this.conn;
    // What is still in flight will not be acknowledged now.
    await Promise.race([client.endAsync(), new Promise((r) => setTimeout(r, 2_000))]);
    client.end(true);
  }
}
