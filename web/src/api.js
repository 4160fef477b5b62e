// The page's client of the agent's documented API (docs/api.md). Requests
// go to the page's own origin with the session cookie; state-changing ones
// carry the session's CSRF token in X-CSRF-Token.

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class API {
  constructor() {
    this.csrf = "";
  }

  async request(method, path, body, { raw = false } = {}) {
    const headers = {};
    if (method !== "GET" && method !== "HEAD") {
      headers["X-CSRF-Token"] = this.csrf;
      if (body !== undefined) headers["Content-Type"] = "application/json";
    }
    const res = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const j = await res.json();
        if (j && j.error) msg = j.error;
      } catch (_) { /* not JSON */ }
      throw new APIError(res.status, msg);
    }
    if (raw) return res;
    if (res.status === 204) return null;
    return res.json();
  }

  get(path, params) {
    const q = params ? `?${new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null))}` : "";
    return this.request("GET", path + (q === "?" ? "" : q));
  }

  post(path, body, opts) { return this.request("POST", path, body, opts); }
  del(path) { return this.request("DELETE", path); }
}
