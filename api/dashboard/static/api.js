// Talking to the /v1 API with the API key the user pasted for this browser session.

const KEY_NAME = "clo.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setKey(key) {
  sessionStorage.setItem(KEY_NAME, key.trim());
}

export function clearKey() {
  sessionStorage.removeItem(KEY_NAME);
}

export function authHeaders(extra = {}) {
  return { ...extra, Authorization: `Bearer ${getKey()}` };
}

// Listeners told when the API rejects the key (revoked while the page was open, say).
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy error page, for instance
  }
  const err = body && body.error ? body.error : {};
  const message = err.message || `${response.status} ${response.statusText || "error"}`;
  return new ApiError(response.status, err.code || "http_error", message, err.param || null);
}

// Low-level request: returns the Response (for streams and downloads) or throws ApiError.
export async function apiRequest(path, { method = "GET", headers = {}, signal, key } = {}) {
  let response;
  const auth = key === undefined ? authHeaders(headers) : { ...headers, Authorization: `Bearer ${key}` };
  try {
    response = await fetch(path, { method, headers: auth, signal, cache: "no-store" });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", "Cannot reach the API server. Is it running?", null);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && key === undefined) {
      unauthorizedListeners.forEach((listener) => listener(error));
    }
    throw error;
  }
  return response;
}

export async function apiJson(path, options = {}) {
  const response = await apiRequest(path, options);
  return response.json();
}

export function jobPath(jobId, suffix = "") {
  return `/v1/jobs/${encodeURIComponent(jobId)}${suffix}`;
}
