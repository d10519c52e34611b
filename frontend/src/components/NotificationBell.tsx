// The bell: the unread count and the newest notifications, kept current by the
// notification stream (SSE). A notification about an order also refreshes that order.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import type { components } from "../api/client";
import { useApi } from "../api/context";
import { API_BASE } from "../config";
import { followEvents } from "../events";
import { useSessionStore } from "../session-context";

type Notification = components["schemas"]["Notification"];

export function NotificationBell({ fetch }: { fetch?: typeof globalThis.fetch }) {
  const api = useApi();
  const store = useSessionStore();
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const [unread, setUnread] = useState<number | null>(null);
  const [live, setLive] = useState<Notification[]>([]);

  useEffect(() => {
    const stop = new AbortController();
    void followEvents({
      url: `${API_BASE}/v1/notifications/stream`,
      session: store,
      fetch,
      signal: stop.signal,
      request: (lastEventId): { headers: Record<string, string> } => ({
        headers: lastEventId ? { "Last-Event-ID": lastEventId } : {},
      }),
      onEvent: (event) => {
        if (event.event === "unread") {
          setUnread((JSON.parse(event.data) as { unread: number }).unread);
        } else if (event.event === "notification") {
          const notification = JSON.parse(event.data) as Notification;
          setLive((seen) => (seen.some((n) => n.id === notification.id) ? seen : [notification, ...seen].slice(0, 20)));
          if (!notification.readAt) setUnread((count) => (count ?? 0) + 1);
          const orderId = notification.data.order_id;
          if (orderId) {
            void queryClient.invalidateQueries({ queryKey: ["order", orderId] });
            void queryClient.invalidateQueries({ queryKey: ["orders"] });
          }
        }
      },
    });
    return () => stop.abort();
  }, [store, fetch, queryClient]);

  const recent = useQuery({
    queryKey: ["notifications"],
    enabled: open,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/notifications", { params: { query: { limit: 10 } } });
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  const readAll = useMutation({
    mutationFn: async () => {
      const { error } = await api.POST("/v1/notifications/read-all");
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => {
      setUnread(0);
      setLive((seen) => seen.map((n) => ({ ...n, readAt: n.readAt ?? new Date().toISOString() })));
      void queryClient.invalidateQueries({ queryKey: ["notifications"] });
    },
  });

  // Streamed ones first, then the stored page without repeats.
  const shown = [...live, ...(recent.data ?? []).filter((n) => !live.some((l) => l.id === n.id))].slice(0, 10);
  return (
    <div
      className="bell"
      onKeyDown={(event) => {
        // Escape closes the panel, as it would a menu.
        if (event.key === "Escape") setOpen(false);
      }}
    >
      <button
        type="button"
        aria-expanded={open}
        aria-controls="notifications-panel"
        onClick={() => setOpen((was) => !was)}
        data-testid="notification-bell"
      >
        Notifications{unread ? <span className="badge" aria-label={`${unread} unread`}> {unread}</span> : null}
      </button>
      {open ? (
        <section id="notifications-panel" className="panel" aria-label="Notifications">
          {recent.isPending && live.length === 0 ? <p role="status">Loading…</p> : null}
          {recent.isError ? <p role="alert">{recent.error.message}</p> : null}
          {shown.length === 0 && !recent.isPending ? <p>Nothing yet.</p> : null}
          <ul>
            {shown.map((n) => (
              <li key={n.id} className={n.readAt ? "read" : "unread"}>
                <strong>{n.title}</strong>
                <span>{n.body}</span>
              </li>
            ))}
          </ul>
          <button type="button" disabled={!unread || readAll.isPending} onClick={() => readAll.mutate()}>
            Mark all read
          </button>
        </section>
      ) : null}
    </div>
  );
}
