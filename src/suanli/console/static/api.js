// The one way the page talks to the gateway: same-origin fetch with the session cookie, the CSRF token on
// every write, and a 401 anywhere taken as the end of the session. The key itself is never kept here: it
// is sent once, in the sign-in request, and forgotten.

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
  }
}

export class Api {
  constructor() {
    this.csrfToken = null; // in memory only: a reload asks GET /console/session for it again
    this.onUnauthorized = () => {};
  }

  async request(method, path, body, extraHeaders) {
    const headers = { accept: "application/json", ...(extraHeaders || {}) };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (WRITE_METHODS.has(method) && this.csrfToken) headers["x-csrf-token"] = this.csrfToken;
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (response.status === 401 && !path.startsWith("/console/session")) this.onUnauthorized(new ApiError(401, parsed));
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  get(path, query) {
    return this.request("GET", withQuery(path, query));
  }
  post(path, body, headers) {
    return this.request("POST", path, body === undefined ? {} : body, headers);
  }
  del(path) {
    return this.request("DELETE", path);
  }

  async signIn(key) {
    const session = await this.request("POST", "/console/session", { key });
    this.csrfToken = session.csrf_token;
    return session;
  }

  async resume() {
    const session = await this.request("GET", "/console/session");
    this.csrfToken = session.csrf_token;
    return session;
  }

  async signOut() {
    try {
      await this.request("DELETE", "/console/session");
    } finally {
      this.csrfToken = null;
    }
  }
}

/** A path with its query string; empty values are left out. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}
