// A call's media through the server's relay (docs/protocol.md, Media):
// one RTCPeerConnection per device, signalled on
// `session/<sid>/webrtc/<me>/up|down`. The device offers first; the
// relay's answer carries the other device's tracks, and the relay offers
// those it could not carry.

export type Signal =
  | { type: "offer" | "answer"; sdp: string }
  | { type: "candidate"; candidate: RTCIceCandidateInit | null };

export class MediaLink {
  /** The connection to the relay; a new one after `renew`. */
  pc: RTCPeerConnection;
  /** The other device's tracks, as the relay forwards them. */
  readonly remote = new MediaStream();
  /** Candidates that came before the description they belong to. */
  private early: RTCIceCandidateInit[] = [];
  private closed = false;
  private started = false;
  /** @internal Whether the session's MQTT connection is up. */
  online = true;

  constructor(
    private readonly iceServers: RTCIceServer[],
    private readonly local: MediaStream | null,
    private readonly send: (signal: Signal) => Promise<void>,
    private readonly onTrack: (remote: MediaStream, track: MediaStreamTrack) => void,
  ) {
    this.pc = this.open();
  }

  private open(): RTCPeerConnection {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    const tracks = this.local?.getTracks() ?? [];
    for (const track of tracks) pc.addTrack(track, this.local!);
    // A device with nothing to send still receives both kinds.
    for (const kind of ["audio", "video"]) {
      if (!tracks.some((t) => t.kind === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    pc.onicecandidate = (e) => {
      if (pc === this.pc) void this.send({ type: "candidate", candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    // A connection that failed (its path, or its DTLS) is made anew;
    // while the session is offline that waits for its reconnect.
    pc.onconnectionstatechange = () => {
      if (pc === this.pc && pc.connectionState === "failed" && this.online) {
        void this.renew().catch((e) => console.warn("media renew", e));
      }
    };
    pc.ontrack = (e) => {
      this.remote.addTrack(e.track);
      e.track.addEventListener("ended", () => this.remote.removeTrack(e.track));
      this.onTrack(this.remote, e.track);
    };
    return pc;
  }

  /**
   * Starts over on a new connection, offered anew: after the connection
   * failed, and after the session reconnected (the relay closes a
   * device's connection when its MQTT connection ends, not a takeover).
   */
  async renew(): Promise<void> {
    if (this.closed || !this.started) return;
    this.shut();
    this.early = [];
    this.pc = this.open();
    await this.start();
  }

  /** The device's first offer. */
  async start(): Promise<void> {
    this.started = true;
    // This connection's offer, even if a renew replaces it meanwhile.
    const pc = this.pc;
    await pc.setLocalDescription(await pc.createOffer());
    if (pc === this.pc) await this.send({ type: "offer", sdp: pc.localDescription!.sdp });
  }

  /** Offers an ICE restart (also when the app knows the network changed). */
  async restartIce(): Promise<void> {
    if (this.pc.signalingState !== "stable") return;
    await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart: true }));
    await this.send({ type: "offer", sdp: this.pc.localDescription!.sdp });
  }

  /** A message of the relay's, from `down`. */
  async receive(signal: Signal): Promise<void> {
    if (this.closed) return;
    switch (signal.type) {
      case "answer":
        // One to an offer of a connection renewed since, or answered already.
        if (this.pc.signalingState !== "have-local-offer") return;
        await this.pc.setRemoteDescription(signal);
        break;
      case "offer":
        // Our own offer outstanding wins: the relay rolls its offer back,
        // answers ours, and offers again.
        if (this.pc.signalingState === "have-local-offer") return;
        await this.pc.setRemoteDescription(signal);
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        await this.send({ type: "answer", sdp: this.pc.localDescription!.sdp });
        break;
      case "candidate":
        if (!signal.candidate) return;
        // Before the description they belong to (the first, or the answer
        // to an ICE restart): kept until it is set.
        if (!this.pc.remoteDescription || this.pc.signalingState === "have-local-offer") {
          this.early.push(signal.candidate);
          return;
        }
        await this.pc.addIceCandidate(signal.candidate);
        return;
    }
    // Each on its own: one that does not apply must not lose the others.
    const early = this.early.splice(0);
    for (const candidate of early) await this.pc.addIceCandidate(candidate).catch(() => {});
  }

  /** Closes the connection at once, without waiting for the relay's. */
  close(): void {
    this.closed = true;
    this.shut();
  }

  /** The connection closed, and its tracks gone from `remote`. */
  private shut(): void {
    this.pc.close();
    for (const track of this.remote.getTracks()) this.remote.removeTrack(track);
  }
}
