// The support inbox: the agent's conversations, most recently active first with unread
// counts, and the chosen one beside them. Being on this page (the socket open) is what
// makes the agent "online", so new customers are given to them.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useEffect, useState } from "react";
import { useApi } from "../api/context";
import { ChatPanel, useChatSocket } from "../components/ChatPanel";

export const Route = createLazyRoute("/admin/support")({ component: SupportInbox });

export function SupportInbox() {
  const api = useApi();
  const queryClient = useQueryClient();
  const { socket, open } = useChatSocket();
  const [chosen, setChosen] = useState<string | null>(null);
  const conversations = useQuery({
    queryKey: ["chat-conversations"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/chat/conversations");
      if (error) throw new Error(error.error.message);
      return data.items.filter((c) => c.kind === "support");
    },
  });
  // A new conversation, or news in one not shown: the list (and its unread counts) changes.
  useEffect(
    () =>
      socket.onFrame((frame) => {
        if (frame.type === "joined" || frame.type === "left" || (frame.type === "message" && frame.message.conversationId !== chosen)) {
          void queryClient.invalidateQueries({ queryKey: ["chat-conversations"] });
        }
      }),
    [socket, chosen, queryClient],
  );
  const shown = chosen ?? conversations.data?.[0]?.id ?? null;
  return (
    <section className="inbox">
      <h1>Support inbox</h1>
      <p role="status">{open ? "You are online: new customers come to you." : "Connecting…"}</p>
      {conversations.isError ? <p role="alert">{conversations.error.message}</p> : null}
      <div className="columns">
        <ul aria-label="Conversations" className="conversations">
          {conversations.data?.length === 0 ? <li>No conversations yet.</li> : null}
          {conversations.data?.map((conversation) => (
            <li key={conversation.id}>
              <button type="button" aria-pressed={conversation.id === shown} onClick={() => setChosen(conversation.id)}>
                {conversation.title} · {new Date(conversation.createdAt).toLocaleString()}
                {conversation.unread > 0 && conversation.id !== shown ? ` (${conversation.unread} new)` : ""}
              </button>
            </li>
          ))}
        </ul>
        {shown ? (
          <ChatPanel
            key={shown}
            conversationId={shown}
            socket={socket}
            connected={open}
            names={(_, role) => (role === "customer" ? "Customer" : "Support")}
          />
        ) : null}
      </div>
    </section>
  );
}
