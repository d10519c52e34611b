// The chat socket against a fake WebSocket: frames reach listeners, sends wait for the
// open socket, and a refused connection is retried with a refreshed token.
import { describe, expect, it } from "vitest";
import { ChatSocket, chatSocketUrl, mergeMessages, type ChatMessage, type ServerFrame } from "./chat";
import { SessionStore } from "./session";

class FakeSocket {
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: ((event: { code: number }) => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
}

function session() {
  const storage = new Map<string, string>([["commerce.refreshToken", "r0"]]);
  let n = 0;
  return new SessionStore(
    {
      getItem: (key: string) => storage.get(key) ?? null,
      setItem: (key: string, value: string) => void storage.set(key, value),
      removeItem: (key: string) => void storage.delete(key),
    } as Storage,
    async () => {
      n += 1;
      return { accessToken: `t${n}`, tokenType: "Bearer", expiresIn: 900, refreshToken: `r${n}`, refreshExpiresIn: 1, sessionId: "s" };
    },
  );
}

const message = (id: string, seq: number): ChatMessage => ({
  id,
  conversationId: "c1",
  seq,
  senderId: "u1",
  clientId: id,
  body: `m${seq}`,
  createdAt: "2026-12-01T00:00:00Z",
  deleted: false,
  attachments: [],
});

describe("ChatSocket", () => {
  it("delivers frames, sends only when open, and reconnects with a fresh token after a refusal", async () => {
    const sockets: FakeSocket[] = [];
    const chat = new ChatSocket(
      session(),
      (url) => {
        const socket = new FakeSocket(url);
        sockets.push(socket);
        return socket as unknown as WebSocket;
      },
      (token) => `ws://shop.test/v1/chat/ws?token=${token}`,
    );
    const frames: ServerFrame[] = [];
    const states: boolean[] = [];
    chat.onFrame((frame) => frames.push(frame));
    chat.onStatus((open) => states.push(open));
    await chat.connect();
    expect(sockets[0]!.url).toBe("ws://shop.test/v1/chat/ws?token=t1");
    expect(chat.send({ type: "ping" })).toBe(false);
    sockets[0]!.open();
    expect(chat.send({ type: "typing", conversationId: "c1" })).toBe(true);
    expect(JSON.parse(sockets[0]!.sent[0]!)).toEqual({ type: "typing", conversationId: "c1" });
    sockets[0]!.onmessage?.({ data: JSON.stringify({ type: "presence", userId: "u2", online: true }) });
    sockets[0]!.onmessage?.({ data: "not json" });
    expect(frames).toEqual([{ type: "presence", userId: "u2", online: true }]);

    // Refused (policy violation: the token expired): a refresh, then a new socket.
    sockets[0]!.onclose?.({ code: 1008 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(sockets).toHaveLength(2);
    expect(sockets[1]!.url).toBe("ws://shop.test/v1/chat/ws?token=t2");
    expect(states).toEqual([true, false]);
    chat.close();
  });

  it("builds the socket address from the gateway's origin", () => {
    expect(chatSocketUrl("a b", "", "https://shop.example")).toBe("wss://shop.example/v1/chat/ws?token=a%20b");
    expect(chatSocketUrl("t", "http://127.0.0.1:8080", "")).toBe("ws://127.0.0.1:8080/v1/chat/ws?token=t");
  });
});

describe("mergeMessages", () => {
  it("keeps each message once, in sequence order, the newest copy winning", () => {
    const edited = { ...message("b", 2), deleted: true };
    expect(mergeMessages([message("b", 2), message("a", 1)], [message("c", 3), edited]).map((m) => [m.id, m.deleted])).toEqual([
      ["a", false],
      ["b", true],
      ["c", false],
    ]);
  });
});
