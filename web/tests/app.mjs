// The web app in headless Chromium (playwright-core), with a fake camera
// and microphone, against a real server: tests/tests/web.rs starts the
// server, its SMS inbox and the SDK's robot example, then runs this.
//
// Env: SB_URL (the server), SB_SMS (the SMS inbox), SB_PAIR_CODE (the
// robot's), CHROMIUM (its binary), SB_SCREENSHOTS (a directory).

import { mkdirSync } from "node:fs";
import { env, launch, signIn, addContact, seesOnline, userId, problems } from "./pages.mjs";

const shots = env("SB_SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const browser = await launch();

/** The page's call's counters once `enough`, read every 200 ms for at most `ms`. */
async function statsUntil(page, enough, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const stats = await page.evaluate(() => window.switchboard.stats());
    if (enough(stats)) return stats;
    if (Date.now() > deadline) throw new Error(`media counters stuck at ${JSON.stringify(stats)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the page's call decodes video and receives audio, and keeps decoding. */
async function mediaFlows(page, name) {
  const first = await statsUntil(page, (s) => s.framesDecoded > 10 && s.audioPackets > 10, 20_000);
  const later = await statsUntil(page, (s) => s.framesDecoded > first.framesDecoded + 10, 10_000);
  console.log(`${name} decodes video and hears audio: ${JSON.stringify(later)}`);
}

const ana = await signIn(browser, "Ana", "+48555900001");
const ben = await signIn(browser, "Ben", "+48555900002");
// A copy of Ana's tab (window.open copies its session storage, as the
// browser's "Duplicate tab" does) is a device of its own.
const [copy] = await Promise.all([
  ana.context().waitForEvent("page"),
  ana.evaluate(() => void window.open(location.href)),
]);
await copy.waitForFunction(() => window.switchboard !== undefined);
const deviceOf = (page) => page.evaluate(() => sessionStorage.getItem("switchboard-device"));
const [anaDevice, copyDevice] = [await deviceOf(ana), await deviceOf(copy)];
if (!anaDevice || !copyDevice || anaDevice === copyDevice) {
  throw new Error(`a copied tab has device ${copyDevice}, the tab ${anaDevice}`);
}
await copy.close();
console.log("a copied tab is another device");

const accessToken = (page) => page.evaluate(() => window.switchboard.session().accessToken);
const anaFirstToken = await accessToken(ana);

// Subscriptions made and dropped while the connection is taken over again
// and again: the broker closes the old connection as the new one comes up,
// and none of them may fail for it.
const churn = await ana.evaluate(async () => {
  const s = window.switchboard.session();
  let takeovers = 0;
  let ops = 0;
  const renewing = (async () => {
    for (; takeovers < 25; takeovers++) await s.renew();
  })();
  let done = false;
  void renewing.finally(() => (done = true));
  while (!done) {
    await s.watch(s.id);
    await s.unwatch(s.id);
    ops += 2;
  }
  await renewing;
  return { takeovers, ops };
});
console.log(`subscribed and unsubscribed through takeovers: ${JSON.stringify(churn)}`);
await ana.fill("#nickname", "Ana");
await ana.click("#profile-form button");
await ana.waitForSelector("#status:has-text('Profile saved.')");

// They find each other by number and see each other online.
await addContact(ana, "+48555900002");
await addContact(ben, "+48555900001");
const [anaId, benId] = [await userId(ana), await userId(ben)];
await seesOnline(ana, benId);
await seesOnline(ben, anaId);
console.log("both online");

// A video call: ringing, accepted, video and audio both ways, hung up.
await ana.click(`#contact-list li[data-id="${benId}"] button:has-text("Call")`);
await ben.waitForSelector("#incoming[open]");
const ringing = await ben.textContent("#incoming-text");
if (!ringing.includes("Ana")) throw new Error(`the ring names the caller: ${ringing}`);
await ben.click("#accept");
await mediaFlows(ana, "Ana");
await mediaFlows(ben, "Ben");
await ana.screenshot({ path: `${shots}/call-ana.png` });
await ben.screenshot({ path: `${shots}/call-ben.png` });
// An ICE restart (what an app offers when it knows the network changed)
// keeps the call:
// new credentials, connected again, video still decoded both ways.
const ufrag = () => ana.evaluate(() => window.switchboard.call().media.pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1]);
const oldUfrag = await ufrag();
await ana.evaluate(() => window.switchboard.call().media.restartIce());
await ana.waitForFunction((old) => {
  const pc = window.switchboard.call().media.pc;
  const renewed = !pc.localDescription.sdp.includes(`a=ice-ufrag:${old}`);
  return renewed && pc.signalingState === "stable" && pc.connectionState === "connected";
}, oldUfrag);
await mediaFlows(ana, "Ana after her ICE restart");
await mediaFlows(ben, "Ben after Ana's ICE restart");
// Ana's connection to the server drops and comes back (no takeover): the
// relay closed her media connection with it, so her call's media starts
// over on a new one, and flows both ways again.
await ana.evaluate(() => (window.droppedPc = window.switchboard.call().media.pc));
await ana.context().setOffline(true);
await ana.waitForSelector("#status:has-text('Reconnecting...')");
await ana.context().setOffline(false);
await ana.waitForFunction(() => {
  const pc = window.switchboard.call().media.pc;
  return pc !== window.droppedPc && pc.connectionState === "connected";
});
// What the browser logs of the requests tried while offline is no fault.
const offline = (problem) => problem.startsWith("Ana console:") && problem.includes("net::ERR_INTERNET_DISCONNECTED");
problems.splice(0, problems.length, ...problems.filter((p) => !offline(p)));
await mediaFlows(ana, "Ana after her connection dropped");
await mediaFlows(ben, "Ben after Ana's connection dropped");
await ben.click("#mute");
const muted = await ben.evaluate(() => window.switchboard.call().local.getAudioTracks().every((t) => !t.enabled));
if (!muted) throw new Error("Mute left the microphone on");
await ben.click("#camera");
const dark = await ben.evaluate(() => window.switchboard.call().local.getVideoTracks().every((t) => !t.enabled));
if (!dark) throw new Error("Camera off left the camera on");
await ana.click("#hangup");
for (const page of [ana, ben]) {
  await page.waitForSelector("#call", { state: "hidden" });
  await page.waitForSelector("#status:has-text('Call ended: hangup')");
  await page.waitForSelector("#history-list li:has-text('hangup')");
}
console.log("called, saw, heard, restarted ICE, hung up");

// Ben on a second device: both ring, the second answers, the first is told.
const ben2 = await signIn(browser, "Ben's laptop", "+48555900002");
await ana.click(`#contact-list li[data-id="${benId}"] button:has-text("Audio")`);
await ben.waitForSelector("#incoming[open]");
await ben2.waitForSelector("#incoming[open]");
await ben2.click("#accept");
await ben.waitForSelector("#status:has-text('Answered on another device.')");
await ben.waitForSelector("#incoming", { state: "hidden" });
await ana.waitForSelector("#call-text:has-text('In call')");
// Ben's first device calls Ana meanwhile: Ben is in a call, so it is busy.
await ben.click(`#contact-list li[data-id="${anaId}"] button:has-text("Audio")`);
await ben.waitForSelector("#status:has-text('Call ended: busy')");
await ben.waitForSelector("#call", { state: "hidden" });
await ben2.click("#hangup");
await ana.waitForSelector("#call", { state: "hidden" });
console.log("answered elsewhere; busy meanwhile");

// Declined on both of Ben's devices; then cancelled by Ana while ringing.
await ana.click(`#contact-list li[data-id="${benId}"] button:has-text("Audio")`);
for (const page of [ben, ben2]) {
  await page.waitForSelector("#incoming[open]");
  await page.click("#decline");
}
await ana.waitForSelector("#status:has-text('Call ended: declined')");
await ana.click(`#contact-list li[data-id="${benId}"] button:has-text("Audio")`);
for (const page of [ben, ben2]) await page.waitForSelector("#incoming[open]");
await ana.waitForSelector("#call-text:has-text('Ringing')");
await ana.click("#hangup");
for (const page of [ben, ben2]) {
  await page.waitForSelector("#incoming", { state: "hidden" });
  await page.waitForSelector("#status:has-text('Call cancelled.')");
}
await ana.waitForSelector("#status:has-text('Call ended: cancelled')");
console.log("declined; cancelled");

// A robot: paired by its code, called, commanded.
await ana.fill("#pair-code", env("SB_PAIR_CODE"));
await ana.click("#pair-form button");
await ana.waitForSelector("#status:has-text('Robot paired.')");
await ana.click("#robot-list li button:has-text('Call')");
await ana.waitForSelector("#call-text:has-text('In call')");
await ana.waitForSelector("#command-form:not([hidden])");
await ana.fill("#command-args", '{"destination": "kitchen"}');
await ana.click("#command-form button");
await ana.waitForSelector("#replies li:has-text('moveTo: moving')");
await ana.waitForSelector("#replies li:has-text('moveTo: arrived')");
await ana.screenshot({ path: `${shots}/robot-ana.png` });
await ana.click("#hangup");
await ana.waitForSelector("#call", { state: "hidden" });
console.log("robot paired, called and moved");

// The server's tokens last seconds here: all of that ran on renewed ones.
if ((await accessToken(ana)) === anaFirstToken) throw new Error("Ana's token was never renewed");
console.log("tokens renewed by takeover throughout");

await browser.close();
if (problems.length) throw new Error(`the pages reported errors:\n${problems.join("\n")}`);
console.log("ALL PASSED");
