// The chat WebSocket: one connection per page, typed frames both ways, reopened with a
// fresh access token when it drops (the page then re-reads what it shows, since frames
// sent while it was away are not replayed).
import type { components } from "./api/client";
import { API_BASE } from "./config";
import type { SessionStore } from "./session";

export type ChatMessage = components["schemas"]["ChatMessage"];

export type ServerFrame =
  | { type: "ready"; userId: string; conversations: string[] }
  | { type: "ack"; clientId: string; conversationId: string; messageId: string; seq: number }
  | { type: "message"; message: ChatMessage }
  | { type: "deleted"; conversationId: string; messageId: string }
  | { type: "typing"; conversationId: string; userId: string; expiresInMs: number }
  | { type: "read"; conversationId: string; userId: string; seq: number }
  | { type: "presence"; userId: string; online: boolean }
  | { type: "joined"; conversationId: string }
  | { type: "invited"; conversationId: string }
  | { type: "left"; conversationId: string }
  | { type: "pong" }
  | { type: "error"; code: string; message: string; clientId?: string };

export type ClientFrame =
  | { type: "send"; conversationId: string; clientId: string; body: string }
  | { type: "typing"; conversationId: string }
  | { type: "read"; conversationId: string; seq: number }
  | { type: "ping" };

/** The socket's address for a token: the gateway's origin with ws(s)://. */
export function chatSocketUrl(token: string, base = API_BASE, origin = globalThis.location?.origin ?? "") {
  const http = base || origin;
  return `${http.replace(/^http/, "ws")}/v1/chat/ws?token=${encodeURIComponent(token)}`;
}

type Listener = (frame: ServerFrame) => void;

export class ChatSocket {
  private socket: WebSocket | undefined;
  private listeners = new Set<Listener>();
  private statusListeners = new Set<(open: boolean) => void>();
  private closed = false;
  private pause = 1000;
  private timer: ReturnType<typeof setTimeout> | undefined;
  open = false;

  constructor(
    private readonly session: SessionStore,
    private readonly makeSocket: (url: string) => WebSocket = (url) => new WebSocket(url),
    private readonly urlFor: (token: string) => string = (token) => chatSocketUrl(token),
  ) {}

  onFrame(listener: Listener) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  onStatus(listener: (open: boolean) => void) {
    this.statusListeners.add(listener);
    return () => void this.statusListeners.delete(listener);
  }

  async connect() {
    this.closed = false;
    if (!this.session.token() && !(await this.session.refresh())) return;
    if (this.closed) return;
    const socket = this.makeSocket(this.urlFor(this.session.token()!));
    this.socket = socket;
    socket.onopen = () => {
      this.pause = 1000;
      this.setOpen(true);
    };
    socket.onmessage = (event: MessageEvent) => {
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(event.data)) as ServerFrame;
      } catch {
        return;
      }
      for (const listener of this.listeners) listener(frame);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.setOpen(false);
      if (this.closed) return;
      // Refused at the upgrade (an expired token looks the same): refresh before retrying.
      const retry = async () => {
        if (event.code === 1006 || event.code === 1008) await this.session.refresh();
        if (!this.closed) void this.connect();
      };
      this.timer = setTimeout(() => void retry(), this.pause);
      this.pause = Math.min(this.pause * 2, 30_000);
    };
  }

  send(frame: ClientFrame): boolean {
    if (!this.socket || this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = undefined;
    this.setOpen(false);
  }

  private setOpen(open: boolean) {
    this.open = open;
    for (const listener of this.statusListeners) listener(open);
  }
}

/** Messages by sequence, each once: the page's copy merged with what the socket says. */
export function mergeMessages(current: ChatMessage[], incoming: ChatMessage[]): ChatMessage[] {
  const byId = new Map(current.map((message) => [message.id, message]));
  for (const message of incoming) byId.set(message.id, message);
  return [...byId.values()].sort((a, b) => a.seq - b.seq);
}
