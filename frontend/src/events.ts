// Server-Sent Events over fetch: the streams this page follows (notifications, an order's
// status through GraphQL) need the access token in a header, which EventSource cannot
// send. A stream that drops is reopened with a growing pause, resuming after the last
// event id; an expired token is refreshed once before giving up.
import type { SessionStore } from "./session";

export interface ServerEvent {
  event: string;
  data: string;
  id?: string;
}

/** Splits a text/event-stream into events as chunks arrive (any chunk boundaries). */
export class EventStreamParser {
  private buffer = "";
  private carriageReturn = false;

  feed(chunk: string): ServerEvent[] {
    // A CR at the end of a chunk may be the first half of a CRLF: decide with the next.
    let text = (this.carriageReturn ? "\r" : "") + chunk;
    this.carriageReturn = text.endsWith("\r");
    if (this.carriageReturn) text = text.slice(0, -1);
    this.buffer += text.replace(/\r\n?/g, "\n");
    const events: ServerEvent[] = [];
    let end: number;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = "message";
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      // A block of comments only (a keep-alive) is not an event.
      if (data.length > 0) events.push({ event, data: data.join("\n"), id });
    }
    return events;
  }
}

export interface FollowOptions {
  url: string;
  session: SessionStore;
  /** The request; called again for each reconnection with the last event id seen. */
  request: (lastEventId: string | undefined) => { method?: string; headers?: Record<string, string>; body?: string };
  onEvent: (event: ServerEvent) => void;
  /** `true` while connected, `false` while waiting to reconnect. */
  onConnected?: (connected: boolean) => void;
  signal: AbortSignal;
  fetch?: typeof globalThis.fetch;
  /** First pause before reconnecting; doubles up to 30 s. */
  retryMs?: number;
}

/** Follows a stream until `signal` aborts or the session ends. */
export async function followEvents(options: FollowOptions): Promise<void> {
  const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  let lastEventId: string | undefined;
  let pause = options.retryMs ?? 1000;
  let refreshed = false;
  while (!options.signal.aborted) {
    if (!options.session.token() && !(await options.session.refresh())) return;
    const { method = "GET", headers = {}, body } = options.request(lastEventId);
    try {
      const response = await fetchFn(options.url, {
        method,
        body,
        signal: options.signal,
        headers: { ...headers, Accept: "text/event-stream", Authorization: `Bearer ${options.session.token()}` },
      });
      if (response.status === 401) {
        if (refreshed || !(await options.session.refresh())) return;
        refreshed = true;
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      refreshed = false;
      options.onConnected?.(true);
      const parser = new EventStreamParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.feed(value)) {
          if (event.id) lastEventId = event.id;
          pause = options.retryMs ?? 1000;
          options.onEvent(event);
        }
      }
    } catch (error) {
      if (options.signal.aborted) return;
      console.warn("event stream interrupted", error);
    }
    options.onConnected?.(false);
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 30_000);
  }
}
