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

export class Link {
  private client: MqttClient;
  /** Subscriptions, restored when a connection starts a new session. */
  private readonly filters = new Set<string>();
  private closed = false;

  constructor(
    private readonly who: Identity,
    private password: string,
    private readonly onMessage: (topic: string, payload: string) => void,
    private readonly onConnection: (connected: boolean) => void,
  ) {
    this.client = this.open();
  }

  private open(): MqttClient {
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
      connectTimeout: 10_000,
    });
    client.on("connect", (connack) => {
      if (client !== this.client) return;
      this.onConnection(true);
      if (!connack.sessionPresent) {
        for (const filter of this.filters) void client.subscribeAsync(filter, { qos: 1 }).catch(() => {});
      }
    });
    client.on("close", () => {
      if (client === this.client && !this.closed) this.onConnection(false);
    });
    client.on("message", (topic, payload) => {
      if (client === this.client) this.onMessage(topic, new TextDecoder().decode(payload));
    });
    return client;
  }

  /** Whether the broker granted `filter`. */
  async subscribe(filter: string): Promise<boolean> {
    try {
      await this.client.subscribeAsync(filter, { qos: 1 });
    } catch (e) {
      // mqtt.js rejects a refusal (a SUBACK failure code) with its code.
      if (typeof (e as { code?: unknown }).code === "number") return false;
      throw e;
    }
    this.filters.add(filter);
    return true;
  }

  async unsubscribe(filter: string): Promise<void> {
    this.filters.delete(filter);
    await this.client.unsubscribeAsync(filter);
  }

  /** Publishes at QoS 1 and waits for the broker's PUBACK. */
  async publish(topic: string, payload: unknown, retain = false): Promise<void> {
    const text = typeof payload === "string" ? payload : JSON.stringify(payload);
    await this.client.publishAsync(topic, text, { qos: 1, retain });
  }

  /**
   * A new connection with `password` takes the old one's place (the
   * broker closes the old one; presence sees no gap), then the old one is
   * dropped.
   */
  async renew(password: string): Promise<void> {
    this.password = password;
    const old = this.client;
    old.options.reconnectPeriod = 0;
    const next = this.open();
    this.client = next;
    await new Promise<void>((resolve) => {
      if (next.connected) resolve();
      else next.once("connect", () => resolve());
    });
    old.end(true);
  }

  /** Sends DISCONNECT and closes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.client.endAsync();
  }
}
