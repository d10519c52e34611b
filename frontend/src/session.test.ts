// The session client against a fake gateway: tokens on requests, one shared refresh on
// expiry, the retried request carrying the new token and its body, sign-out when the
// refresh token is refused.
import { beforeEach, describe, expect, it } from "vitest";
import { createSessionClient, mergeGuestCart } from "./session";

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
  const issuedGuestCarts: string[] = [];
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
    if (path === "/v1/cart/guest") {
      issuedGuestCarts.push(`guest-${issuedGuestCarts.length + 1}.signature`);
      return json(201, { guestCart: issuedGuestCarts.at(-1) });
    }
    const guest = request.headers.get("x-guest-cart");
    if (guest && !request.headers.has("authorization") && path.startsWith("/v1/cart")) {
      return issuedGuestCarts.includes(guest) ? json(200, { id: guest, items: [] }) : json(401, { error: { code: "unauthorized", message: "X-Guest-Cart" } });
    }
    if (path === "/v1/cart/merge") {
      return request.headers.get("authorization") === `Bearer ${valid()}` ? json(200, { id: "c1", items: [] }) : json(401, {});
    }
    if (request.headers.get("authorization") !== `Bearer ${valid()}`) {
      return json(401, { error: { code: "unauthorized", message: "expired" } });
    }
    return json(200, { id: "c1", items: [], promo: null, subtotal: "0.00", discount: "0.00", total: "0.00", currency: "USD" });
  };
  return { fetch: fetch as typeof globalThis.fetch, seen, issuedGuestCarts };
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
    const { response: asGuest } = await api.GET("/v1/cart");
    expect(asGuest.status).toBe(200);
    const last = seen.at(-1)!;
    expect(last.authorization).toBeNull();
    expect(last.guest).toBe("guest-1.signature");
  });

  it("asks the server for one guest cart, sends it on cart calls only, and merges it at sign-in", async () => {
    const { fetch, seen, issuedGuestCarts } = gateway(() => "access-1", { count: 0 });
    const { api, session } = createSessionClient({ baseUrl: "http://shop.test", storage: window.localStorage, fetch });
    const [a, b] = await Promise.all([api.GET("/v1/cart"), api.POST("/v1/cart/items", { body: { productId: "p1", quantity: 1 } })]);
    expect([a.response.status, b.response.status]).toEqual([200, 200]);
    expect(issuedGuestCarts).toEqual(["guest-1.signature"]);
    await api.GET("/v1/products");
    expect(seen.at(-1)!.guest).toBeNull();

    session.signIn(pair(1));
    await mergeGuestCart(api, session);
    const merge = seen.at(-1)!;
    expect([merge.path, merge.authorization, JSON.parse(merge.body)]).toEqual(["/v1/cart/merge", "Bearer access-1", { guestCart: "guest-1.signature" }]);
    expect(session.storedGuestCart()).toBeNull();
  });

  it("starts a new guest cart when the shop no longer honours the stored one", async () => {
    const { fetch, issuedGuestCarts } = gateway(() => "never", { count: 0 });
    window.localStorage.setItem("commerce.guestCartToken", "from-a-rotated-key.signature");
    const { api, session } = createSessionClient({ baseUrl: "http://shop.test", storage: window.localStorage, fetch });
    const { response } = await api.POST("/v1/cart/items", { body: { productId: "p1", quantity: 1 } });
    expect(response.status).toBe(200);
    expect(issuedGuestCarts).toEqual(["guest-1.signature"]);
    expect(session.storedGuestCart()).toBe("guest-1.signature");
  });
});
