// A signed-in user or robot: tokens kept fresh, one MQTT connection, and
// everything the server says as events.

import { Emitter } from "./emitter";
import { Http, SwitchboardError } from "./http";
import { idOf, isId, newSid } from "./ids";
import { Link } from "./link";
import { MediaLink, type Signal } from "./media";

export type CallKind = "video" | "audio";

export interface SignedIn {
  userId?: string;
  robotId?: string;
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  mqtt: { tcp: string; ws: string; clientId: string };
}

export interface Profile {
  id: string;
  nickname?: string;
  photoUrl?: string;
  email?: string;
  altPhone?: string;
  updatedAt: number;
}

export interface Presence {
  userId: string;
  online: boolean;
  devices: string[];
  lastSeen?: number;
  seq: number;
}

export interface Invite {
  sid: string;
  from: string;
  fromDevice?: string;
  kind: CallKind;
  sentAt: number;
}

export interface CallState {
  sid: string;
  state: "inviting" | "ringing" | "accepted" | "ended";
  reason?: string;
  caller: string;
  callee: string;
  acceptedBy?: string;
  legs?: Record<string, string>;
}

export interface CallRecord {
  sid: string;
  caller: string;
  callee: string;
  kind: CallKind;
  state: string;
  reason?: string;
  acceptedBy?: string;
  createdAt: number;
  acceptedAt?: number;
  endedAt?: number;
  durationMs?: number;
}

export interface ServerError {
  topic: string;
  code: string;
  message: string;
}

export interface CommandReply {
  requestId: string;
  status: string;
  [field: string]: unknown;
}

export interface CommandRequest {
  sid: string;
  command: string;
  requestId: string;
  arguments: Record<string, unknown>;
}

export interface SessionEvents {
  presence: Presence;
  profile: Profile;
  incomingcall: Invite;
  callstate: CallState;
  /** A track of the other device in a call whose media this device carries. */
  remotetrack: { sid: string; stream: MediaStream; track: MediaStreamTrack };
  commandrequest: CommandRequest;
  commandreply: CommandReply & { sid: string; command: string };
  /** A refusal the server reported on `clients/<me>/errors`. */
  error: ServerError;
  connection: { connected: boolean };
}

/** A final status closes a command's request (docs/protocol.md). */
const FINAL = ["arrived", "done", "succeeded", "failed", "rejected", "cancelled", "error"];

/** How long an operation waits for the server's word. */
const WAIT_MS = 10_000;

export class Session extends Emitter<SessionEvents> {
  /** The user's or robot's id. */
  readonly id: string;
  readonly clientId: string;
  readonly isRobot: boolean;
  private access: string;
  private refresh: string;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private readonly link: Link;
  /** Calls this device made: it carries their media. */
  private readonly made = new Set<string>();
  /** Invites shown, once each. */
  private readonly shown = new Set<string>();
  /** Each call's media, from the moment it is asked for. */
  private readonly media = new Map<string, Promise<MediaLink>>();
  private readonly states = new Map<string, CallState>();
  private closed = false;

  /** @internal `Switchboard.signIn` makes sessions. */
  constructor(
    private readonly http: Http,
    signedIn: SignedIn,
    mqttUrl: string | undefined,
  ) {
    super();
    this.id = signedIn.userId ?? signedIn.robotId ?? "";
    this.isRobot = signedIn.robotId !== undefined;
    this.clientId = signedIn.mqtt.clientId;
    this.access = signedIn.accessToken;
    this.refresh = signedIn.refreshToken;
    this.link = new Link(
      { url: mqttUrl ?? signedIn.mqtt.ws, clientId: this.clientId, username: this.id },
      this.access,
      (topic, payload) => this.route(topic, payload),
      (connected) => this.connection(connected),
      () => void this.renew(),
      (topic) => this.resent.set(topic, Date.now()),
    );
    this.scheduleRefresh(signedIn.expiresIn);
  }

  /** Set while the connection is down (not replaced by a takeover). */
  private down = false;

  private connection(connected: boolean): void {
    for (const link of this.links.values()) {
      link.online = connected;
      // The relay closed this device's media connections as its MQTT
      // connection ended: each call's media starts over.
      if (connected && this.down) void link.renew().catch((e) => console.warn("media renew", e));
    }
    this.down = !connected;
    this.emit("connection", { connected });
  }

  /** @internal Subscribes what every session follows. */
  async start(): Promise<void> {
    // Robots are called too (by their owners).
    const own = [`clients/${this.clientId}/errors`, `invite/${this.id}/+`];
    for (const filter of own) {
      if (!(await this.link.subscribe(filter))) {
        throw new SwitchboardError(403, "forbidden", `the broker refused ${filter}`);
      }
    }
  }

  // --- tokens ------------------------------------------------------------

  /** The access token now, for the app's own calls to the HTTP API. */
  get accessToken(): string {
    return this.access;
  }

  private scheduleRefresh(expiresIn: number): void {
    clearTimeout(this.refreshTimer);
    // At four fifths of its life: the connection outlives its token by
    // 30 s at most.
    const ms = Math.max(1_000, expiresIn * 800);
    this.refreshTimer = setTimeout(() => void this.renew(), ms);
  }

  /** New tokens, and a new connection that takes over the old one. */
  async renew(): Promise<void> {
    if (this.closed || this.renewing || this.revoked) return;
    this.renewing = true;
    try {
      const pair = await this.http.send<{ accessToken: string; refreshToken: string; expiresIn: number }>(
        "POST",
        "/v1/auth/refresh",
        undefined,
        { refreshToken: this.refresh },
      );
      this.access = pair.accessToken;
      this.refresh = pair.refreshToken;
      this.scheduleRefresh(pair.expiresIn);
      if ((await this.link.renew(this.access)) === "refused") {
        this.revoke("the broker refused a new token: sign in again");
      }
    } catch (e) {
      if (e instanceof SwitchboardError && e.status === 401) {
        this.revoke("the sign-in expired or was revoked: sign in again");
        return;
      }
      // Tried again soon: a network blip must not end the session.
      console.warn("renewing the session's tokens", e);
      this.scheduleRefresh(10);
    } finally {
      this.renewing = false;
    }
  }

  private renewing = false;
  /** Set once the server refuses this sign-in: renewing stops. */
  private revoked = false;
  /**
   * Topics published again on a new connection, and when: the broker may
   * have had the first copy, and refuses the second (a used sid, an open
   * request id); those refusals are not the app's.
   */
  private readonly resent = new Map<string, number>();

  /** The sign-in is over: said once, and nothing renewed any more. */
  private revoke(message: string): void {
    this.revoked = true;
    clearTimeout(this.refreshTimer);
    this.emit("error", { topic: "", code: "unauthorized", message });
  }

  private api<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.http.send<T>(method, path, this.access, body);
  }

  // --- profiles, contacts, presence -----------------------------------

  myProfile(): Promise<Profile> {
    return this.api("GET", "/v1/me/profile");
  }

  setProfile(profile: Omit<Profile, "id" | "updatedAt">): Promise<Profile> {
    return this.api("PUT", "/v1/me/profile", profile);
  }

  profileOf(userId: string): Promise<Profile> {
    return this.api("GET", `/v1/users/${encodeURIComponent(userId)}/profile`);
  }

  /** The registered numbers among `phones`, with their users' ids. */
  async discover(phones: string[]): Promise<{ phone: string; userId: string }[]> {
    return (await this.api<{ matches: { phone: string; userId: string }[] }>("POST", "/v1/contacts/discover", { phones })).matches;
  }

  async contacts(): Promise<string[]> {
    return (await this.api<{ userIds: string[] }>("GET", "/v1/me/contacts")).userIds;
  }

  /** Who may see this user (under `contacts` visibility): replaces the list. */
  async setContacts(userIds: string[]): Promise<void> {
    await this.api("PUT", "/v1/me/contacts", { userIds });
  }

  /** Follows a user's presence and profile (`presence` and `profile` events, the current value at once). */
  async watch(userId: string): Promise<void> {
    for (const topic of ["presence", "info"]) {
      if (!(await this.link.subscribe(`users/${userId}/${topic}`))) {
        throw new SwitchboardError(403, "forbidden", `${userId} is not visible to you`);
      }
    }
  }

  async unwatch(userId: string): Promise<void> {
    for (const topic of ["presence", "info"]) await this.link.unsubscribe(`users/${userId}/${topic}`);
  }

  // --- calls ----------------------------------------------------------

  /** Calls `userId`: the new call's sid once the server took the invite. */
  async call(userId: string, kind: CallKind = "video"): Promise<string> {
    if (!isId(userId)) throw new SwitchboardError(0, "bad_request", `${JSON.stringify(userId)} is not an id`);
    const sid = newSid();
    this.made.add(sid);
    const topic = `invite/${userId}/${sid}`;
    const device = this.clientId.includes(":") ? this.clientId.split(":")[1] : undefined;
    const refusal = this.next("error", (e) => e.topic === topic, WAIT_MS);
    refusal.catch(() => {});
    await this.link.publish(topic, { sid, from: this.id, fromDevice: device, kind, sentAt: Date.now() });
    // A call the server took may be followed (its state is sent at once);
    // one it refused was not recorded, and its refusal is reported.
    if (!(await this.link.subscribe(`session/${sid}/state`))) {
      this.made.delete(sid);
      const refused = await refusal.catch(() => undefined);
      throw new SwitchboardError(0, refused?.code ?? "forbidden", refused?.message ?? "the call was refused");
    }
    return sid;
  }

  accept(sid: string): Promise<void> {
    return this.act(sid, "accept");
  }

  decline(sid: string): Promise<void> {
    return this.act(sid, "decline");
  }

  cancel(sid: string): Promise<void> {
    return this.act(sid, "cancel");
  }

  hangup(sid: string): Promise<void> {
    return this.act(sid, "hangup");
  }

  /** The newest state this session saw of call `sid`. */
  callState(sid: string): CallState | undefined {
    return this.states.get(sid);
  }

  private act(sid: string, action: string): Promise<void> {
    return this.link.publish(`session/${sid}/call`, { action });
  }

  /** This user's calls, newest first. */
  async history(limit = 50): Promise<CallRecord[]> {
    return (await this.api<{ calls: CallRecord[] }>("GET", `/v1/calls?limit=${limit}`)).calls;
  }

  /**
   * Carries this device's side of call `sid` through the relay, sending
   * `local` (or nothing: then it only receives). Call it once the call is
   * accepted; the other device's tracks arrive as `remotetrack` events.
   * The connection closes when the call ends.
   */
  startMedia(sid: string, local: MediaStream | null): Promise<MediaLink> {
    let started = this.media.get(sid);
    if (!started) {
      started = this.openMedia(sid, local);
      this.media.set(sid, started);
      started.catch(() => this.closeMedia(sid));
    }
    return started;
  }

  private async openMedia(sid: string, local: MediaStream | null): Promise<MediaLink> {
    const { iceServers } = await this.api<{ iceServers: RTCIceServer[] }>("GET", "/v1/ice-servers");
    // The call may have ended meanwhile.
    if (!this.media.has(sid)) throw new SwitchboardError(409, "conflict", `call ${sid} ended`);
    const up = `session/${sid}/webrtc/${this.clientId}/up`;
    const link = new MediaLink(
      iceServers,
      local,
      (signal) => this.link.publish(up, signal),
      (stream, track) => this.emit("remotetrack", { sid, stream, track }),
    );
    this.links.set(sid, link);
    if (!(await this.link.subscribe(`session/${sid}/webrtc/${this.clientId}/down`)) || !this.media.has(sid)) {
      this.closeMedia(sid);
      throw new SwitchboardError(403, "forbidden", `this device does not carry call ${sid}'s media`);
    }
    await link.start();
    return link;
  }

  /** The media links made, for the relay's messages. */
  private readonly links = new Map<string, MediaLink>();

  /** Whether this device carries the media of a call in `state`. */
  carriesMedia(state: CallState): boolean {
    return state.state === "accepted" && (this.made.has(state.sid) || state.acceptedBy === this.clientId);
  }

  private closeMedia(sid: string): void {
    this.media.delete(sid);
    this.links.get(sid)?.close();
    this.links.delete(sid);
    void this.link.unsubscribe(`session/${sid}/webrtc/${this.clientId}/down`).catch(() => {});
  }

  // --- robots ---------------------------------------------------------

  /** Pairs with the robot showing `code`: its id. */
  async pair(code: string): Promise<string> {
    if (!/^\d{6}$/.test(code)) throw new SwitchboardError(0, "bad_request", "a pairing code is 6 digits");
    const robotTopic = `pairing/${code}/robotID`;
    const statusTopic = `pairing/${code}/status`;
    const robotId = this.nextMessage(robotTopic, WAIT_MS);
    const status = this.nextMessage(statusTopic, WAIT_MS);
    robotId.catch(() => {});
    status.catch(() => {});
    try {
      // A look-up: refused when no robot shows the code (and counted).
      if (!(await this.link.subscribe(robotTopic))) {
        throw new SwitchboardError(404, "not_found", "no robot shows this code (or too many guesses)");
      }
      const robot = await robotId;
      await this.link.subscribe(statusTopic);
      await this.link.publish(`pairing/${code}/userID`, this.id);
      const outcome = JSON.parse(await status) as { status: string; userId?: string };
      if (outcome.status !== "paired") throw new SwitchboardError(409, "conflict", `pairing ${outcome.status}`);
      if (outcome.userId !== this.id) throw new SwitchboardError(409, "conflict", "another user took this code first");
      return robot;
    } finally {
      this.waiting.delete(robotTopic);
      this.waiting.delete(statusTopic);
      // Never looked up again: a reconnect would count it anew.
      for (const topic of [robotTopic, statusTopic]) void this.link.unsubscribe(topic).catch(() => {});
    }
  }

  async robots(): Promise<{ robotId: string; pairedAt: number }[]> {
    return (await this.api<{ robots: { robotId: string; pairedAt: number }[] }>("GET", "/v1/me/robots")).robots;
  }

  async unpair(robotId: string): Promise<void> {
    await this.api("DELETE", `/v1/me/robots/${encodeURIComponent(robotId)}`);
  }

  /**
   * Sends `command` with `args` to the robot in call `sid`; each of its
   * answers (and the server's `timed_out`) comes to `onReply`. Resolves
   * with the request's id once sent.
   */
  async sendCommand(
    sid: string,
    command: string,
    args: Record<string, unknown>,
    onReply: (reply: CommandReply) => void,
  ): Promise<string> {
    if (this.states.get(sid)?.state === "ended") {
      throw new SwitchboardError(409, "conflict", `call ${sid} ended`);
    }
    const requestId = newSid();
    await this.link.subscribe(`session/${sid}/+/response`);
    const offReplies = this.on("commandreply", (r) => {
      if (r.sid !== sid || r.requestId !== requestId) return;
      onReply(r);
      if (FINAL.includes(r.status)) off();
    });
    // The server forgets a call's requests when it ends.
    const offEnd = this.on("callstate", (s) => s.sid === sid && s.state === "ended" && off());
    const off = () => {
      offReplies();
      offEnd();
    };
    try {
      await this.link.publish(`session/${sid}/${command}/request`, { ...args, requestId });
    } catch (e) {
      off();
      throw e;
    }
    return requestId;
  }

  /** A robot's answer to a request (`moving`, then `arrived`, ...). */
  respond(sid: string, command: string, requestId: string, status: string, fields: Record<string, unknown> = {}): Promise<void> {
    return this.link.publish(`session/${sid}/${command}/response`, { ...fields, requestId, status });
  }

  // --- the end ----------------------------------------------------------

  /** Ends the sign-in: its refresh tokens stop working, the connection closes. */
  async signOut(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.refreshTimer);
    for (const sid of [...this.media.keys()]) this.closeMedia(sid);
    await this.link.close();
    await this.http.send("POST", "/v1/auth/logout", undefined, { refreshToken: this.refresh }).catch(() => {});
  }

  /** What a call held is let go once it ended. */
  private ended(sid: string): void {
    this.closeMedia(sid);
    this.made.delete(sid);
    const follows = [`session/${sid}/state`, `session/${sid}/+/response`, `session/${sid}/+/request`];
    for (const filter of follows) void this.link.unsubscribe(filter).catch(() => {});
  }

  // --- what the broker sends ------------------------------------------

  private nextMessage(topic: string, ms: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Only its own: a later wait on the same topic may have replaced it.
        if (this.waiting.get(topic) === waiter) this.waiting.delete(topic);
        reject(new SwitchboardError(0, "timeout", `nothing on ${topic} within ${ms} ms`));
      }, ms);
      const waiter = (payload: string) => {
        clearTimeout(timer);
        this.waiting.delete(topic);
        resolve(payload);
      };
      this.waiting.set(topic, waiter);
    });
  }

  private readonly waiting = new Map<string, (payload: string) => void>();

  private route(topic: string, payload: string): void {
    const waiter = this.waiting.get(topic);
    if (waiter) return waiter(payload);
    const parts = topic.split("/");
    let value: unknown;
    try {
      value = JSON.parse(payload);
    } catch {
      return;
    }
    switch (parts[0]) {
      case "users":
        if (parts[2] === "presence") this.emit("presence", { ...(value as Omit<Presence, "userId">), userId: parts[1] });
        if (parts[2] === "info") this.emit("profile", value as Profile);
        return;
      case "invite": {
        const invite = value as Invite;
        if (this.shown.has(invite.sid)) return;
        this.shown.add(invite.sid);
        const follow = [`session/${invite.sid}/state`];
        // A robot follows its owner's requests from the invite on, so the
        // first one, right after the accept, is never missed.
        if (this.isRobot) follow.push(`session/${invite.sid}/+/request`);
        void Promise.all(follow.map((f) => this.link.subscribe(f)))
          .then(() => this.act(invite.sid, "ringing"))
          .catch((e) => console.warn("following a call", e));
        this.emit("incomingcall", invite);
        return;
      }
      case "clients": {
        const error = value as ServerError;
        const resent = this.resent.get(error.topic);
        if (resent !== undefined && Date.now() - resent < WAIT_MS) {
          // The refused copy of a publish the broker had already taken.
          this.resent.delete(error.topic);
          return;
        }
        this.emit("error", error);
        return;
      }
      case "session":
        return this.session(parts, value);
    }
  }

  private session(parts: string[], value: unknown): void {
    const sid = parts[1];
    if (parts[2] === "state") {
      const state = value as CallState;
      if (this.states.get(sid)?.state === "ended") return;
      this.states.set(sid, state);
      if (state.state === "ended") this.ended(sid);
      this.emit("callstate", state);
      return;
    }
    if (parts[2] === "webrtc" && parts[4] === "down") {
      void this.links.get(sid)?.receive(value as Signal).catch((e) => console.warn("media signal", e));
      return;
    }
    const [command, kind] = [parts[2], parts[3]];
    const fields = value as Record<string, unknown>;
    if (kind === "request") {
      const { requestId, ...args } = fields;
      this.emit("commandrequest", { sid, command, requestId: String(requestId), arguments: args });
    } else if (kind === "response") {
      this.emit("commandreply", { ...(fields as CommandReply), sid, command });
    }
  }
}

export { idOf };
