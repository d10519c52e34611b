// One conversation: its messages (read over REST, then followed on the socket), a box to
// write in that tells the others you are typing, who else is typing, and who is online.
import { useQuery } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { useApi } from "../api/context";
import { ChatSocket, mergeMessages, type ChatMessage } from "../chat";
import { useSession, useSessionStore } from "../session-context";

/** One socket for the page, connected while the page is shown. */
export function useChatSocket(makeSocket?: (url: string) => WebSocket) {
  const store = useSessionStore();
  const [socket] = useState(() => new ChatSocket(store, makeSocket));
  const [open, setOpen] = useState(false);
  useEffect(() => {
    const stop = socket.onStatus(setOpen);
    void socket.connect();
    return () => {
      stop();
      socket.close();
    };
  }, [socket]);
  return { socket, open };
}

interface Pending {
  clientId: string;
  body: string;
  failed?: string;
}

export function ChatPanel({
  conversationId,
  socket,
  connected,
  names,
}: {
  conversationId: string;
  socket: ChatSocket;
  connected: boolean;
  /** How to call a participant by role; the viewer is "You". */
  names: (userId: string, role: string | undefined) => string;
}) {
  const api = useApi();
  const session = useSession();
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [pending, setPending] = useState<Pending[]>([]);
  const [typing, setTyping] = useState<Map<string, number>>(new Map());
  const [online, setOnline] = useState<Map<string, boolean>>(new Map());
  const [draft, setDraft] = useState("");
  const lastTypingSent = useRef(0);
  const [now, setNow] = useState(() => Date.now());

  const conversation = useQuery({
    queryKey: ["chat", conversationId],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/chat/conversations/{id}", { params: { path: { id: conversationId } } });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const history = useQuery({
    // Re-read after every reconnection: frames sent while away are not replayed.
    queryKey: ["chat", conversationId, "messages", connected],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/chat/conversations/{id}/messages", {
        params: { path: { id: conversationId }, query: { limit: 100 } },
      });
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  useEffect(() => {
    if (history.data) setMessages((current) => mergeMessages(current, history.data));
  }, [history.data]);
  useEffect(() => {
    if (conversation.data) {
      setOnline(new Map(conversation.data.participants.map((p) => [p.userId, p.online])));
    }
  }, [conversation.data]);

  useEffect(
    () =>
      socket.onFrame((frame) => {
        switch (frame.type) {
          case "message":
            if (frame.message.conversationId !== conversationId) return;
            setMessages((current) => mergeMessages(current, [frame.message]));
            setPending((current) => current.filter((p) => p.clientId !== frame.message.clientId));
            setTyping((current) => {
              const next = new Map(current);
              next.delete(frame.message.senderId);
              return next;
            });
            return;
          case "ack":
            if (frame.conversationId === conversationId) {
              setPending((current) => current.filter((p) => p.clientId !== frame.clientId));
            }
            return;
          case "typing":
            if (frame.conversationId !== conversationId || frame.userId === session.userId) return;
            setTyping((current) => new Map(current).set(frame.userId, Date.now() + frame.expiresInMs));
            return;
          case "presence":
            setOnline((current) => new Map(current).set(frame.userId, frame.online));
            return;
          case "deleted":
            if (frame.conversationId === conversationId) {
              setMessages((current) => current.map((m) => (m.id === frame.messageId ? { ...m, deleted: true, body: "" } : m)));
            }
            return;
          case "error":
            if (frame.clientId) {
              setPending((current) => current.map((p) => (p.clientId === frame.clientId ? { ...p, failed: frame.message } : p)));
            }
            return;
          default:
        }
      }),
    [socket, conversationId, session.userId],
  );

  // Typing notes expire on their own; tick while any is shown.
  useEffect(() => {
    if (typing.size === 0) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [typing.size]);

  // Tell the others how far this user has read.
  const lastSeq = messages.at(-1)?.seq;
  useEffect(() => {
    if (connected && lastSeq !== undefined) socket.send({ type: "read", conversationId, seq: lastSeq });
  }, [connected, lastSeq, socket, conversationId]);

  const participants = conversation.data?.participants ?? [];
  const roleOf = (userId: string) => participants.find((p) => p.userId === userId)?.role;
  const nameOf = (userId: string) => (userId === session.userId ? "You" : names(userId, roleOf(userId)));
  const typingNow = [...typing.entries()].filter(([, until]) => until > now).map(([userId]) => nameOf(userId));
  const others = participants.filter((p) => p.userId !== session.userId);

  const send = () => {
    const body = draft.trim();
    if (!body) return;
    const clientId = crypto.randomUUID();
    const sent = socket.send({ type: "send", conversationId, clientId, body });
    setPending((current) => [...current, { clientId, body, failed: sent ? undefined : "Not connected; try again." }]);
    if (sent) setDraft("");
  };

  if (conversation.isError) return <p role="alert">The conversation could not be loaded: {conversation.error.message}</p>;
  return (
    <section className="chat" aria-label="Conversation">
      <p className="presence">
        {others.length === 0
          ? "Waiting for someone to join…"
          : others.map((p) => (
              <span key={p.userId} data-testid="presence">
                {nameOf(p.userId)}: {online.get(p.userId) ? "online" : "offline"}
              </span>
            ))}
        {connected ? null : <span role="status"> Reconnecting…</span>}
      </p>
      <ol className="messages" aria-live="polite" aria-label="Messages">
        {history.isPending && messages.length === 0 ? <li role="status">Loading messages…</li> : null}
        {messages.map((message) => (
          <li key={message.id} className={message.senderId === session.userId ? "mine" : "theirs"}>
            <strong>{nameOf(message.senderId)}</strong> {message.deleted ? <em>deleted</em> : message.body}
          </li>
        ))}
        {pending.map((p) => (
          <li key={p.clientId} className="mine pending">
            <strong>You</strong> {p.body} <em>{p.failed ?? "sending…"}</em>
          </li>
        ))}
      </ol>
      <p className="typing" aria-live="polite" data-testid="typing">
        {typingNow.length > 0 ? `${typingNow.join(", ")} ${typingNow.length > 1 ? "are" : "is"} typing…` : ""}
      </p>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          send();
        }}
      >
        <label htmlFor={`chat-${conversationId}`}>Message</label>
        <input
          id={`chat-${conversationId}`}
          value={draft}
          maxLength={4000}
          autoComplete="off"
          onChange={(event) => {
            setDraft(event.target.value);
            // At most one typing note every two seconds.
            if (Date.now() - lastTypingSent.current > 2000) {
              lastTypingSent.current = Date.now();
              socket.send({ type: "typing", conversationId });
            }
          }}
        />
        <button type="submit" disabled={!draft.trim()}>
          Send
        </button>
      </form>
    </section>
  );
}
