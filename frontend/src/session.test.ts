// The session client against a fake gateway: tokens on requests, one shared refresh on
// expiry, the retried request carrying the new token and its body, sign-out when the
// refresh token is refused.
import { beforeEach, describe, expect, it } from "vitest";
import { createSessionClient } from "./session";

const pair = (n: number) => ({
  accessToken: `access-${n}`,
  tokenType: "Bearer" as const,
  expiresIn: 900,
  refreshToken: `refresh-${n}`,
  refreshExpiresIn: 1209600,
  sessionId: "00000000-0000-4000-8000-000000000001",
});

interface Seen {
  path: string;
  authorization: string | null;
  guest: string | null;
  body: string;
}

function gateway(valid: () => string, refreshes: { count: number }, refreshOk = true) {
  const seen: Seen[] = [];
  const fetch = async (input: RequestInfo | URL) => {
    const request = input as Request;
    const path = new URL(request.url).pathname;
    const body = await request.text();
    seen.push({ path, authorization: request.headers.get("authorization"), guest: request.headers.get("x-guest-cart"), body });
    const json = (status: number, value: unknown) =>
      new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
    if (path === "/v1/auth/refresh") {
      refreshes.count += 1;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return refreshOk ? json(200, pair(refreshes.count + 1)) : json(401, { error: { code: "unauthorized", message: "no" } });
    }
    if (request.headers.get("authorization") !== `Bearer ${valid()}`) {
      return json(401, { error: { code: "unauthorized", message: "expired" } });
    }
    return json(200, { id: "c1", items: [], promo: null, subtotal: "0.00", discount: "0.00", total: "0.00", currency: "USD" });
  };
  return { fetch: fetch as typeof globalThis.fetch, seen };
}

describe("session client", () => {
  beforeEach(() => window.localStorage.clear());

  it("refreshes once for concurrent expired requests and retries them with their bodies", async () => {
    const refreshes = { count: 0 };
    const { fetch, seen } = gateway(() => "access-2", refreshes);
    const { api, session } = createSessionClient({ baseUrl: "http://shop.test", storage: window.localStorage, fetch });
    session.signIn(pair(1)); // access-1 has expired on the server
    const [a, b] = await Promise.all([
      api.POST("/v1/cart/items", { body: { productId: "p1", quantity: 2 } }),
      api.GET("/v1/cart"),
    ]);
    expect(a.response.status).toBe(200);
    expect(b.response.status).toBe(200);
    expect(refreshes.count).toBe(1);
    const retried = seen.filter((call) => call.path === "/v1/cart/items");
    expect(retried.map((call) => call.authorization)).toEqual(["Bearer access-1", "Bearer access-2"]);
    expect(JSON.parse(retried[1]!.body)).toEqual({ productId: "p1", quantity: 2 });
    // The rotated refresh token replaced the old one.
    expect(window.localStorage.getItem("commerce.refreshToken")).toBe("refresh-2");
  });

  it("signs out when the refresh token is refused, and then sends the guest cart", async () => {
    const refreshes = { count: 0 };
    const { fetch, seen } = gateway(() => "never", refreshes, false);
    const { api, session } = createSessionClient({ baseUrl: "http://shop.test", storage: window.localStorage, fetch });
    session.signIn(pair(1));
    const { response } = await api.GET("/v1/cart");
    expect(response.status).toBe(401);
    expect(session.state().signedIn).toBe(false);
    expect(window.localStorage.getItem("commerce.refreshToken")).toBeNull();
    await api.GET("/v1/cart");
    const last = seen.at(-1)!;
    expect(last.authorization).toBeNull();
    expect(last.guest).toMatch(/^[0-9a-f-]{36}$/);
  });
});
