// The admin API as the console speaks it: the token (kept in sessionStorage, so it goes with the
// tab), JSON calls whose failures carry the API's error (code, message, field), and live-update
// streams read over fetch (EventSource cannot send an Authorization header).

const KEY = "herald.token";

export const token = () => sessionStorage.getItem(KEY);
export const signOut = () => sessionStorage.removeItem(KEY);

/** The role a token claims (`operator` or `viewer`), read from its payload; the API decides anyway. */
export function roleOf(t) {
  try {
    const payload = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    return claims.sub === "admin" ? claims.role : null;
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    this.field = e.field || null;
  }
}

/** Signs in with `t` if the API accepts it as an admin token. */
export async function signIn(t) {
  const role = roleOf(t.trim());
  if (!role) throw new ApiError(401, { error: { message: "not an admin token", field: "token" } });
  const response = await fetch("/admin/v1/notifications?limit=1", { headers: { Authorization: `Bearer ${t.trim()}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const error = new ApiError(response.status, body);
    error.field = "token";
    throw error;
  }
  sessionStorage.setItem(KEY, t.trim());
  return role;
}

export async function call(method, path, body, contentType = "application/json") {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = contentType;
  const payload = body === undefined || typeof body === "string" || body instanceof Blob ? body : JSON.stringify(body);
  const response = await fetch(path, { method, headers, body: payload });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Uploads `file` to `path` with upload progress (`onProgress(fraction)`); XHR, since fetch has none. */
export function upload(path, file, contentType, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    xhr.setRequestHeader("Content-Type", contentType);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "the upload failed" } }));
    xhr.send(file);
  });
}

/**
 * Follows a server-sent event stream: `onEvent(type, data, id)` per event. It reconnects with
 * `Last-Event-ID` when the stream ends or breaks, until `close()` or `onEvent` returns `"stop"`.
 */
export function stream(path, onEvent, onState = () => {}) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;
  const close = () => { stopped = true; controller.abort(); };
  (async () => {
    while (!stopped) {
      try {
        const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal });
        if (!response.ok) {
          onState("refused", new ApiError(response.status, await response.json().catch(() => null)));
          if (response.status !== 429 && response.status < 500) return;
        } else {
          onState("open");
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let type = "message", data = "", id = null;
              for (const line of block.split("\n")) {
                if (line.startsWith(":")) continue;
                const [name, ...rest] = line.split(":");
                const text = rest.join(":").replace(/^ /, "");
                if (name === "event") type = text;
                else if (name === "data") data += text;
                else if (name === "id") id = text;
              }
              if (id !== null) lastId = id;
              if (data && onEvent(type, data, id) === "stop") { close(); return; }
            }
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return { close };
}
