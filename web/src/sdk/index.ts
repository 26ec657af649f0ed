// The Switchboard browser SDK: sign in, then a `Session` with profiles,
// presence, calls and their media through the server's relay, robot
// pairing and commands. docs/web.md documents it.

import { Http, SwitchboardError } from "./http";
import { isDevice } from "./ids";
import { Session, type SignedIn } from "./session";

export { SwitchboardError } from "./http";
export { MediaLink } from "./media";
export { idOf, isId } from "./ids";
export { Session } from "./session";
export type * from "./session";

export interface Config {
  /** The HTTP API, e.g. `https://sb.example.org`; the page's own origin when served by the server. */
  httpUrl: string;
  /** The broker over WebSocket; the address the server announces at sign-in when unset. */
  mqttUrl?: string;
  /** This installation's name, `[a-z0-9_-]{1,32}`: one per browser. */
  device: string;
}

export class Switchboard {
  private readonly http: Http;

  constructor(private readonly config: Config) {
    if (!isDevice(config.device)) {
      throw new SwitchboardError(0, "bad_request", `device ${JSON.stringify(config.device)} is not [a-z0-9_-]{1,32}`);
    }
    this.http = new Http(config.httpUrl);
  }

  /** Sends a one-time code by SMS: the number in E.164. */
  async requestCode(phone: string): Promise<string> {
    return (await this.http.send<{ phone: string }>("POST", "/v1/auth/otp", undefined, { phone })).phone;
  }

  async signIn(phone: string, code: string): Promise<Session> {
    const signedIn = await this.http.send<SignedIn>("POST", "/v1/auth/verify", undefined, {
      phone,
      code,
      device: this.config.device,
    });
    return this.open(signedIn);
  }

  async signInRobot(robotId: string, secret: string): Promise<Session> {
    const signedIn = await this.http.send<SignedIn>("POST", "/v1/auth/robot", undefined, { robotId, secret });
    return this.open(signedIn);
  }

  private async open(signedIn: SignedIn): Promise<Session> {
    const session = new Session(this.http, signedIn, this.config.mqttUrl);
    try {
      await session.start();
    } catch (e) {
      await session.signOut();
      throw e;
    }
    return session;
  }
}
