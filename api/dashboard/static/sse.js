// Server-sent events over fetch(): EventSource cannot send an Authorization header, so the
// text/event-stream body is read and parsed here, and reconnects resume with Last-Event-ID.

import { ApiError, apiRequest } from "./api.js";

// Parses SSE text incrementally; calls onFrame({id, event, data}) per dispatched event.
export class SseParser {
  constructor(onFrame, onRetry) {
    this.onFrame = onFrame;
    this.onRetry = onRetry || (() => {});
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    let newline;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith("\r\n", newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length || this.event) {
        this.onFrame({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id") this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

// Follows a job's event stream until the server sends `end`, the signal aborts, or the API
// refuses (404/401). Reconnects after network drops, resuming after the last event seen.
export async function followEvents(path, { onEvent, onState, signal, lastEventId = 0 }) {
  let lastId = lastEventId;
  let retryMs = 2000;
  let failures = 0;
  const state = onState || (() => {});
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = String(lastId);
      const response = await apiRequest(path, { headers, signal });
      failures = 0;
      state("live");
      const parser = new SseParser(
        (frame) => {
          if (frame.id && /^\d+$/.test(frame.id)) lastId = Number(frame.id);
          if (frame.event === "end") {
            ended = true;
            return;
          }
          let payload = null;
          try {
            payload = JSON.parse(frame.data);
          } catch {
            payload = { message: frame.data };
          }
          onEvent(frame.event, payload);
        },
        (ms) => {
          retryMs = ms;
        },
      );
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (ended) {
          reader.cancel().catch(() => {});
          break;
        }
      }
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return "aborted";
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
        state("refused", error);
        return "refused";
      }
      failures += 1;
    }
    if (ended) {
      state("ended");
      return "ended";
    }
    state("reconnecting");
    const wait = Math.min(retryMs * 2 ** Math.min(failures, 4), 30000);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  return "aborted";
}
