// Setup time in Chromium, for the bench tool (`switchboard-bench web`):
// Ana calls Ben ROUNDS times; each time, from Ben's click on Accept to
// the first remote video frame each page presents (requestVideoFrameCallback
// on the remote video). Prints one line `RESULT {"callee": [ms...],
// "caller": [ms...]}`, then ALL PASSED.
//
// Env: as pages.mjs, and SB_ROUNDS.

import { env, launch, signIn, addContact, seesOnline, userId, problems } from "./pages.mjs";

const rounds = Number(env("SB_ROUNDS"));
const browser = await launch();
const ana = await signIn(browser, "Ana", "+48555910001");
const ben = await signIn(browser, "Ben", "+48555910002");
await addContact(ana, "+48555910002");
await addContact(ben, "+48555910001");
const benId = await userId(ben);
await seesOnline(ana, benId);
await seesOnline(ben, await userId(ana));

/** Resolves in the page with the wall-clock time of the next remote frame shown. */
function armFirstFrame(page) {
  return page.evaluate(() => {
    const video = document.getElementById("remote-video");
    window.firstFrame = new Promise((resolve) => video.requestVideoFrameCallback(() => resolve(Date.now())));
  });
}

const callee = [];
const caller = [];
for (let round = 0; round < rounds; round++) {
  await ana.click(`#contact-list li[data-id="${benId}"] button:has-text("Call")`);
  await ben.waitForSelector("#incoming[open]");
  await armFirstFrame(ana);
  await armFirstFrame(ben);
  const accepted = await ben.evaluate(() => {
    document.getElementById("accept").click();
    return Date.now();
  });
  const [benFrame, anaFrame] = await Promise.all([
    ben.evaluate(() => window.firstFrame),
    ana.evaluate(() => window.firstFrame),
  ]);
  callee.push(benFrame - accepted);
  caller.push(anaFrame - accepted);
  await ana.click("#hangup");
  for (const page of [ana, ben]) await page.waitForSelector("#call", { state: "hidden" });
}
await browser.close();
if (problems.length) throw new Error(`the pages reported errors:\n${problems.join("\n")}`);
console.log(`RESULT ${JSON.stringify({ callee, caller })}`);
console.log("ALL PASSED");
