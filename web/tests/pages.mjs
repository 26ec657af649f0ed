// The web app's pages in headless Chromium (playwright-core) with a fake
// camera and microphone: what the browser test and the setup-time bench
// share.
//
// Env: SB_URL (the server), SB_SMS (its SMS inbox), CHROMIUM (the binary).

import { chromium } from "playwright-core";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

export function launch() {
  return chromium.launch({
    executablePath: env("CHROMIUM"),
    args: [
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** The newest one-time code the server sent to `phone`. */
async function smsCode(phone) {
  const answer = await fetch(`${env("SB_SMS")}/code?phone=${encodeURIComponent(phone)}`);
  if (!answer.ok) throw new Error(`no code for ${phone}: ${await answer.text()}`);
  return answer.text();
}

const pages = [];
/** Every error a page logged or threw without catching. */
export const problems = [];
// On a failure, what each page last said.
process.on("uncaughtException", async (e) => {
  for (const [name, page] of pages) {
    console.log(`${name} status: ${await page.textContent("#status").catch(() => "?")}`);
  }
  console.error(e);
  process.exit(1);
});

/** A phone-sized page of its own (its own device), signed in as `phone`. */
export async function signIn(browser, name, phone) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  pages.push([name, page]);
  page.on("console", (m) => m.type() === "error" && problems.push(`${name} console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`${name} page error: ${e}`));
  await page.goto(env("SB_URL"));
  await page.fill("#phone", phone);
  await page.click("#phone-form button");
  await page.waitForSelector("#code-form:not([hidden])");
  await page.fill("#code", await smsCode(phone));
  await page.click("#code-form button");
  await page.waitForSelector("#home:not([hidden])");
  console.log(`${name} signed in`);
  return page;
}

export async function addContact(page, phone) {
  await page.fill("#contact-phone", phone);
  await page.click("#add-contact button");
}

/** Waits until `page` shows `id` (a contact's) online. */
export async function seesOnline(page, id) {
  await page.waitForSelector(`#contact-list li[data-id="${id}"] .dot.online`);
}

export function userId(page) {
  return page.evaluate(() => window.switchboard.session().id);
}
