// The whole storefront (router, query cache, typed client, session) over a fake network:
// a handler answers each request. A signed-in user is a stored refresh token that the
// fake gateway exchanges for a token naming the role.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { RouterProvider, createMemoryHistory } from "@tanstack/react-router";
import { render } from "@testing-library/react";
import { ApiProvider } from "./api/context";
import { createAppRouter } from "./router";
import { createSessionClient } from "./session";
import { SessionProvider } from "./session-context";

export interface Call {
  method: string;
  url: URL;
  body: unknown;
}

export type Reply = { status: number; body: unknown } | Response;

export const json = (status: number, body: unknown): Reply => ({ status, body });

export const emptyCart = { id: "c1", items: [], promo: null, subtotal: "0.00", discount: "0.00", total: "0.00", currency: "USD" };

/** A token the page can read the user from (the server would check its signature). */
export function fakeAccessToken(sub: string, role: string) {
  const part = (value: object) => btoa(JSON.stringify(value)).replace(/=+$/, "");
  return `${part({ alg: "none" })}.${part({ sub, role })}.signature`;
}

/** What the header's cart badge asks on every page, unless a test answers it. */
function defaultReply(path: string): Reply | undefined {
  if (path === "/v1/cart") return json(200, emptyCart);
  if (path === "/v1/cart/guest") return json(201, { guestCart: "guest-cart.signature" });
  return undefined;
}

export function renderShop(
  path: string,
  handler: (call: Call) => Reply | Promise<Reply> | undefined,
  options: { role?: "customer" | "support" | "admin" } = {},
) {
  const calls: Call[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    const text = await request.clone().text();
    const call = { method: request.method, url: new URL(request.url), body: text ? JSON.parse(text) : undefined };
    calls.push(call);
    if (call.url.pathname === "/v1/auth/refresh" && options.role) {
      return Response.json({
        accessToken: fakeAccessToken("00000000-0000-4000-8000-00000000000a", options.role),
        tokenType: "Bearer",
        expiresIn: 900,
        refreshToken: "refresh-next",
        refreshExpiresIn: 1209600,
        sessionId: "00000000-0000-4000-8000-000000000001",
      });
    }
    const reply = (await handler(call)) ?? defaultReply(call.url.pathname);
    if (reply instanceof Response) return reply;
    if (!reply) {
      // Streams nobody in the test cares about stay open and quiet.
      if (call.url.pathname.endsWith("/stream")) {
        return new Response(new ReadableStream(), { headers: { "content-type": "text/event-stream" } });
      }
      return Response.json({ error: { code: "not_found", message: `no fake for ${call.url.pathname}` } }, { status: 404 });
    }
    return new Response(reply.status === 204 ? null : JSON.stringify(reply.body), {
      status: reply.status,
      headers: { "content-type": "application/json" },
    });
  };
  window.localStorage.clear();
  if (options.role) window.localStorage.setItem("commerce.refreshToken", "refresh-stored");
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const router = createAppRouter(queryClient, createMemoryHistory({ initialEntries: [path] }));
  const { api, session } = createSessionClient({
    baseUrl: "http://shop.test",
    storage: window.localStorage,
    fetch: fetch as typeof globalThis.fetch,
  });
  // Streams (events.ts) use the global fetch with the page's origin.
  globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) =>
    fetch(new URL(String(input instanceof Request ? input.url : input), "http://shop.test"), init)) as typeof globalThis.fetch;
  // As main.tsx does: a stored session starts with a refresh.
  void session.refresh();
  render(
    <SessionProvider store={session}>
      <ApiProvider client={api}>
        <QueryClientProvider client={queryClient}>
          <RouterProvider router={router} />
        </QueryClientProvider>
      </ApiProvider>
    </SessionProvider>,
  );
  return { calls, router, session };
}
