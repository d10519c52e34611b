// Help from a person: the customer's support conversation (made on first visit, with an
// agent who is online when there is one), live over the chat socket.
import { useQuery } from "@tanstack/react-query";
import { Link, createLazyRoute } from "@tanstack/react-router";
import { useApi } from "../api/context";
import { ChatPanel, useChatSocket } from "../components/ChatPanel";
import { useSession } from "../session-context";

export const Route = createLazyRoute("/support")({ component: SupportPage });

export function SupportPage() {
  const session = useSession();
  if (!session.signedIn) {
    return (
      <p>
        <Link to="/login">Sign in</Link> to talk to us.
      </p>
    );
  }
  return <SupportChat />;
}

function SupportChat() {
  const api = useApi();
  const { socket, open } = useChatSocket();
  const conversation = useQuery({
    queryKey: ["support-conversation"],
    // Opening the page is the request for help; asking again returns the same conversation.
    queryFn: async () => {
      const { data, error } = await api.POST("/v1/chat/support");
      if (error) throw new Error(error.error.message);
      return data;
    },
    staleTime: Infinity,
  });
  return (
    <section>
      <h1>Support</h1>
      {conversation.isPending ? <p role="status">Finding someone to help…</p> : null}
      {conversation.isError ? <p role="alert">Support could not be reached: {conversation.error.message}</p> : null}
      {conversation.data ? (
        <ChatPanel
          conversationId={conversation.data.id}
          socket={socket}
          connected={open}
          names={(_, role) => (role === "agent" ? "Support" : "Customer")}
        />
      ) : null}
    </section>
  );
}
