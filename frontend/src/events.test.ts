// The event-stream parser over awkward chunking, and the follower's refresh, resume and
// reconnect behaviour against a fake server.
import { describe, expect, it } from "vitest";
import { EventStreamParser, followEvents, type ServerEvent } from "./events";
import { SessionStore } from "./session";

describe("EventStreamParser", () => {
  it("joins events split anywhere, skips comments and keep-alives, and keeps ids and data lines", () => {
    const text = ': hello\n\nevent: unread\ndata: {"unread": 2}\n\nid: 7\nevent: notification\ndata: line one\r\ndata:line two\r\n\r\n';
    for (const size of [1, 3, 11, text.length]) {
      const parser = new EventStreamParser();
      const events: ServerEvent[] = [];
      for (let at = 0; at < text.length; at += size) events.push(...parser.feed(text.slice(at, at + size)));
      expect(events).toEqual([
        { event: "unread", data: '{"unread": 2}', id: undefined },
        { event: "notification", data: "line one\nline two", id: "7" },
      ]);
    }
  });
});

function memoryStorage(): Storage {
  const items = new Map<string, string>();
  return {
    get length() {
      return items.size;
    },
    clear: () => items.clear(),
    getItem: (key) => items.get(key) ?? null,
    key: (index) => [...items.keys()][index] ?? null,
    removeItem: (key) => void items.delete(key),
    setItem: (key, value) => void items.set(key, value),
  };
}

describe("followEvents", () => {
  it("refreshes an expired token, resumes after the last id when the stream drops, and stops when told", async () => {
    const storage = memoryStorage();
    storage.setItem("commerce.refreshToken", "r1");
    let refreshes = 0;
    const session = new SessionStore(storage, async () => {
      refreshes += 1;
      return {
        accessToken: `a${refreshes}`,
        tokenType: "Bearer",
        expiresIn: 900,
        refreshToken: `r${refreshes + 1}`,
        refreshExpiresIn: 1,
        sessionId: "s",
      };
    });
    const seen: { authorization: string | null; lastEventId: string | null }[] = [];
    const stop = new AbortController();
    const events: ServerEvent[] = [];
    const fetch = async (_url: RequestInfo | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      seen.push({ authorization: headers.get("authorization"), lastEventId: headers.get("last-event-id") });
      // The first token is taken as expired; then one event and the stream ends.
      if (headers.get("authorization") === "Bearer a1") return new Response(null, { status: 401 });
      const id = seen.length;
      return new Response(`id: ${id}\nevent: notification\ndata: {}\n\n`, { headers: { "content-type": "text/event-stream" } });
    };
    await followEvents({
      url: "http://shop.test/v1/notifications/stream",
      session,
      fetch: fetch as typeof globalThis.fetch,
      signal: stop.signal,
      retryMs: 1,
      request: (lastEventId): { headers: Record<string, string> } => ({
        headers: lastEventId ? { "Last-Event-ID": lastEventId } : {},
      }),
      onEvent: (event) => {
        events.push(event);
        if (events.length === 2) stop.abort();
      },
    });
    expect(refreshes).toBe(2);
    expect(seen).toEqual([
      { authorization: "Bearer a1", lastEventId: null },
      { authorization: "Bearer a2", lastEventId: null },
      { authorization: "Bearer a2", lastEventId: "2" },
    ]);
    expect(events.map((event) => event.id)).toEqual(["2", "3"]);
  });

  it("gives up when the session is over", async () => {
    const session = new SessionStore(memoryStorage(), async () => undefined);
    let asked = 0;
    await followEvents({
      url: "http://shop.test/stream",
      session,
      fetch: (async () => {
        asked += 1;
        return new Response(null, { status: 500 });
      }) as typeof globalThis.fetch,
      signal: new AbortController().signal,
      request: () => ({}),
      onEvent: () => undefined,
    });
    expect(asked).toBe(0);
  });
});
