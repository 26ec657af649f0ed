// The HTTP API: JSON in and out, errors as `SwitchboardError`.

/** An answer of the server that is not a success, or no answer at all. */
export class SwitchboardError extends Error {
  /** The HTTP status (0: no answer). */
  readonly status: number;
  /** The server's error code (`bad_request`, `unauthorized`, `rate_limited`, ...), or `network`. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "SwitchboardError";
    this.status = status;
    this.code = code;
  }
}

export class Http {
  readonly base: string;

  constructor(base: string) {
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new SwitchboardError(0, "bad_request", `server URL ${JSON.stringify(base)} is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new SwitchboardError(0, "bad_request", `server URL ${JSON.stringify(base)} must be http or https`);
    }
    this.base = base.replace(/\/+$/, "");
  }

  /** Sends a request and reads its JSON answer (`undefined` for none). */
  async send<T>(method: string, path: string, token?: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      throw new SwitchboardError(0, "network", `${method} ${path}: ${String(e)}`);
    }
    const text = await response.text();
    const json = text ? safeJson(text) : undefined;
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new SwitchboardError(
        response.status,
        error?.code ?? "internal",
        error?.message ?? `${method} ${path} answered ${response.status}`,
      );
    }
    return json as T;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
