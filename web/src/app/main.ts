// The web app the server serves at `/`: sign in, a profile, contacts and
// their presence, calls with video and audio, history, robots paired by
// code, called, and sent commands. Built on the browser SDK alone.

import { Switchboard, SwitchboardError, type CallState, type Invite, type MediaLink, type Session } from "../sdk";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/**
 * One name per tab, kept across its reloads: two tabs are two devices
 * (one name would have them take each other's connection over). A tab
 * holds a lock on its name while it lives, so a duplicate of it, which
 * copies its session storage, finds the name taken and picks another.
 * (Without Web Locks, outside a secure context, a duplicate shares it.)
 */
async function deviceName(): Promise<string> {
  for (;;) {
    const device = sessionStorage.getItem("switchboard-device") ?? `web-${Math.random().toString(36).slice(2, 10)}`;
    sessionStorage.setItem("switchboard-device", device);
    if (!navigator.locks || (await holdWhileOpen(`switchboard-device-${device}`))) return device;
    sessionStorage.removeItem("switchboard-device");
  }
}

/** Takes the lock `name` for as long as the page lives; false if it is held. */
function holdWhileOpen(name: string): Promise<boolean> {
  return new Promise((resolve) => {
    navigator.locks
      .request(name, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        return lock ? new Promise<never>(() => {}) : undefined;
      })
      // Locks refused here (a sandboxed frame): the name as it is.
      .catch(() => resolve(true));
  });
}

const sb = new Switchboard({ httpUrl: location.origin, device: await deviceName() });
let session: Session | undefined;
let phone = "";

interface Contact {
  name: string;
  online: boolean;
  robot: boolean;
}
const contacts = new Map<string, Contact>();

interface Current {
  sid: string;
  peer: string;
  local: MediaStream | null;
  media?: MediaLink;
}
let current: Current | undefined;
let incoming: Invite | undefined;

function say(text: string): void {
  $("status").textContent = text;
}

/** Runs `work`, saying what went wrong if it fails. */
async function attempt(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (e) {
    say(e instanceof SwitchboardError || e instanceof Error ? e.message : String(e));
  }
}

// --- signing in --------------------------------------------------------

$("phone-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    phone = await sb.requestCode($<HTMLInputElement>("phone").value);
    $("code-form").hidden = false;
    say(`A code was sent to ${phone}.`);
    $<HTMLInputElement>("code").focus();
  });
});

$("code-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    session = await sb.signIn(phone, $<HTMLInputElement>("code").value);
    await signedIn(session);
  });
});

$("sign-out").addEventListener("click", () => {
  void attempt(async () => {
    await session?.signOut();
    location.reload();
  });
});

async function signedIn(s: Session): Promise<void> {
  $("sign-in").hidden = true;
  $("home").hidden = false;
  $("sign-out").hidden = false;
  $("me").textContent = phone;
  say("Signed in.");
  s.on("presence", (p) => update(p.userId, { online: p.online }));
  s.on("profile", (p) => p.nickname && update(p.id, { name: p.nickname }));
  s.on("incomingcall", (invite) => ring(invite));
  s.on("callstate", (state) => void callChanged(state));
  s.on("remotetrack", ({ sid, stream }) => {
    if (current?.sid === sid) $<HTMLVideoElement>("remote-video").srcObject = stream;
  });
  s.on("error", (e) => say(`${e.code}: ${e.message}`));
  s.on("connection", ({ connected }) => connected || say("Reconnecting..."));
  const profile = await s.myProfile().catch(() => undefined);
  $<HTMLInputElement>("nickname").value = profile?.nickname ?? "";
  for (const id of await s.contacts()) await follow(id, id.slice(0, 8), false);
  for (const r of await s.robots()) await follow(r.robotId, `robot ${r.robotId.slice(0, 8)}`, true);
  await showHistory();
}

// --- profile and contacts ------------------------------------------------

$("profile-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    const nickname = $<HTMLInputElement>("nickname").value.trim();
    await session!.setProfile(nickname ? { nickname } : {});
    say("Profile saved.");
  });
});

$("add-contact").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    const s = session!;
    const number = $<HTMLInputElement>("contact-phone").value;
    const [match] = await s.discover([number]);
    if (!match) return say(`${number} is not on Switchboard.`);
    const ids = new Set(await s.contacts());
    ids.add(match.userId);
    await s.setContacts([...ids]);
    await follow(match.userId, number, false);
    $<HTMLInputElement>("contact-phone").value = "";
  });
});

/** Contacts who do not let this user see them (yet): asked again now and then. */
const hidden = new Set<string>();

async function follow(id: string, name: string, robot: boolean): Promise<void> {
  if (!contacts.has(id)) contacts.set(id, { name, online: false, robot });
  render();
  await watch(id);
}

async function watch(id: string): Promise<void> {
  try {
    await session!.watch(id);
    hidden.delete(id);
  } catch {
    // Listed without presence until they add this user too.
    hidden.add(id);
  }
}

setInterval(() => {
  if (session) for (const id of hidden) void watch(id);
}, 3000);

function update(id: string, change: Partial<Contact>): void {
  const contact = contacts.get(id);
  if (!contact) return;
  Object.assign(contact, change);
  render();
}

function render(): void {
  for (const [listId, robots] of [["contact-list", false], ["robot-list", true]] as const) {
    const list = $(listId);
    list.replaceChildren();
    for (const [id, c] of contacts) {
      if (c.robot !== robots) continue;
      const li = document.createElement("li");
      li.dataset.id = id;
      const dot = document.createElement("span");
      dot.className = c.online ? "dot online" : "dot";
      dot.title = c.online ? "online" : "offline";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = c.name;
      li.append(dot, name, button("Call", () => void startCall(id, "video")));
      if (!robots) li.append(button("Audio", () => void startCall(id, "audio")));
      list.append(li);
    }
  }
}

function button(text: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

// --- robots --------------------------------------------------------------

$("pair-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    const robotId = await session!.pair($<HTMLInputElement>("pair-code").value);
    await follow(robotId, `robot ${robotId.slice(0, 8)}`, true);
    $<HTMLInputElement>("pair-code").value = "";
    say("Robot paired.");
  });
});

$("command-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(async () => {
    if (!current) return;
    const name = $<HTMLInputElement>("command-name").value.trim();
    const text = $<HTMLTextAreaElement>("command-args").value.trim() || "{}";
    let args: unknown;
    try {
      args = JSON.parse(text);
    } catch {
      return say("The arguments are not JSON.");
    }
    if (typeof args !== "object" || args === null || Array.isArray(args)) return say("The arguments are a JSON object.");
    await session!.sendCommand(current.sid, name, args as Record<string, unknown>, (reply) => {
      const li = document.createElement("li");
      li.textContent = `${name}: ${reply.status}`;
      $("replies").append(li);
    });
  });
});

// --- calls ---------------------------------------------------------------

async function localMedia(kind: "video" | "audio"): Promise<MediaStream | null> {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: kind === "video" });
  } catch (e) {
    say(`No camera or microphone: ${String(e)}; receiving only.`);
    return null;
  }
}

async function startCall(peer: string, kind: "video" | "audio"): Promise<void> {
  await attempt(async () => {
    if (current) return say("Already in a call.");
    const local = await localMedia(kind);
    const mine = showCall(peer, local, "Calling...");
    let sid: string;
    try {
      sid = await session!.call(peer, kind);
    } catch (e) {
      if (isCurrent(mine)) endCall();
      throw e;
    }
    if (!isCurrent(mine)) {
      // Hung up before the server took the call.
      await session!.cancel(sid);
      return;
    }
    mine.sid = sid;
    // It may have ended already (busy).
    const state = session!.callState(sid);
    if (state) await callChanged(state);
  });
}

function ring(invite: Invite): void {
  if (current || incoming) return;
  incoming = invite;
  const who = contacts.get(invite.from)?.name ?? invite.from.slice(0, 8);
  $("incoming-text").textContent = `${who} is calling (${invite.kind})`;
  $<HTMLDialogElement>("incoming").show();
}

$("accept").addEventListener("click", () => {
  const invite = incoming;
  if (!invite) return;
  $<HTMLDialogElement>("incoming").close();
  incoming = undefined;
  void attempt(async () => {
    const local = await localMedia(invite.kind);
    const now = session!.callState(invite.sid)?.state;
    if (now === "accepted" || now === "ended") {
      // Answered elsewhere or ended while the camera was being asked for.
      for (const track of local?.getTracks() ?? []) track.stop();
      return;
    }
    showCall(invite.from, local, "Connecting...").sid = invite.sid;
    await session!.accept(invite.sid);
  });
});

$("decline").addEventListener("click", () => {
  const invite = incoming;
  $<HTMLDialogElement>("incoming").close();
  incoming = undefined;
  if (invite) void attempt(() => session!.decline(invite.sid));
});

async function callChanged(state: CallState): Promise<void> {
  if (incoming?.sid === state.sid && state.state !== "ringing" && state.state !== "inviting") {
    // Answered on another device, cancelled or missed.
    $<HTMLDialogElement>("incoming").close();
    incoming = undefined;
    say(state.state === "accepted" ? "Answered on another device." : `Call ${state.reason ?? "ended"}.`);
  }
  if (!current || current.sid !== state.sid) return;
  if (state.state === "ended") {
    say(`Call ended: ${state.reason ?? ""}`);
    endCall();
    await showHistory();
    return;
  }
  $("call-text").textContent = state.state === "accepted" ? "In call" : "Ringing...";
  if (session!.carriesMedia(state) && !current.media) {
    current.media = await session!.startMedia(state.sid, current.local);
  }
}

/** Whether `call` is still the one shown (not hung up meanwhile). */
function isCurrent(call: Current): boolean {
  return current === call;
}

function showCall(peer: string, local: MediaStream | null, text: string): Current {
  current = { sid: "", peer, local };
  $("call").hidden = false;
  $("call-text").textContent = text;
  $<HTMLVideoElement>("local-video").srcObject = local;
  $("command-form").hidden = !contacts.get(peer)?.robot;
  $("replies").replaceChildren();
  setPressed("mute", false);
  setPressed("camera", false);
  return current;
}

function endCall(): void {
  for (const track of current?.local?.getTracks() ?? []) track.stop();
  current = undefined;
  $("call").hidden = true;
  $<HTMLVideoElement>("remote-video").srcObject = null;
  $<HTMLVideoElement>("local-video").srcObject = null;
}

$("hangup").addEventListener("click", () => {
  const call = current;
  const state = call?.sid ? session!.callState(call.sid)?.state : undefined;
  if (!call?.sid || state === "ended") return endCall();
  void attempt(() => (state === "accepted" ? session!.hangup(call.sid) : session!.cancel(call.sid)));
});

function setPressed(id: string, pressed: boolean): void {
  $(id).setAttribute("aria-pressed", String(pressed));
}

function toggle(id: string, kind: "audio" | "video"): void {
  const pressed = $(id).getAttribute("aria-pressed") !== "true";
  setPressed(id, pressed);
  for (const track of current?.local?.getTracks() ?? []) if (track.kind === kind) track.enabled = !pressed;
}

$("mute").addEventListener("click", () => toggle("mute", "audio"));
$("camera").addEventListener("click", () => toggle("camera", "video"));

async function showHistory(): Promise<void> {
  const calls = await session!.history(20);
  const list = $("history-list");
  list.replaceChildren();
  for (const c of calls) {
    const peer = c.caller === session!.id ? c.callee : c.caller;
    const li = document.createElement("li");
    const when = new Date(c.createdAt).toLocaleString();
    const name = contacts.get(peer)?.name ?? peer.slice(0, 8);
    const seconds = c.durationMs ? ` ${Math.round(c.durationMs / 1000)} s` : "";
    li.textContent = `${c.caller === session!.id ? "to" : "from"} ${name}, ${c.reason ?? c.state}${seconds}, ${when}`;
    list.append(li);
  }
}

/** For tests and the curious: the session, and the current call's media counters. */
Object.assign(window, {
  switchboard: {
    session: () => session,
    call: () => current,
    async stats(): Promise<{ framesDecoded: number; audioPackets: number }> {
      let framesDecoded = 0;
      let audioPackets = 0;
      const report = await current?.media?.pc.getStats();
      report?.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") framesDecoded += s.framesDecoded ?? 0;
        if (s.kind === "audio") audioPackets += s.packetsReceived ?? 0;
      });
      return { framesDecoded, audioPackets };
    },
  },
});
