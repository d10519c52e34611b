// The signed-in session. The access token lives in memory only; the refresh token in
// localStorage, so a reload keeps the session (an XSS on this origin could read it: the
// page loads no third-party script, and the server rotates refresh tokens and revokes the
// whole session when an old one is replayed). A 401 triggers one refresh (shared by
// concurrent requests) and one retry.
import type { Middleware } from "openapi-fetch";
import { createApiClient, type ApiClient, type TokenPair } from "./api/client";

const REFRESH_KEY = "commerce.refreshToken";
const GUEST_CART_KEY = "commerce.guestCartToken";

export type Role = "customer" | "support" | "admin";

export interface SessionState {
  signedIn: boolean;
  /** From the access token (unknown until the first one arrives after a reload). */
  userId?: string;
  role?: Role;
}

/** Who the access token says the user is; the server checks the signature, not this page. */
export function tokenIdentity(accessToken: string): { userId?: string; role?: Role } {
  try {
    const payload = accessToken.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json) as { sub?: unknown; role?: unknown };
    const role = ["customer", "support", "admin"].find((candidate) => candidate === claims.role) as Role | undefined;
    return { userId: typeof claims.sub === "string" ? claims.sub : undefined, role };
  } catch {
    return {};
  }
}

export class SessionStore {
  private accessToken: string | undefined;
  private refreshing: Promise<boolean> | undefined;
  private issuingGuestCart: Promise<string | undefined> | undefined;
  private listeners = new Set<() => void>();
  private snapshot: SessionState;

  constructor(
    private readonly storage: Storage,
    private readonly refreshWith: (refreshToken: string) => Promise<TokenPair | undefined>,
    private readonly issueGuestCart: () => Promise<string | undefined> = async () => undefined,
  ) {
    this.snapshot = { signedIn: this.refreshToken() !== null };
  }

  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  state = () => this.snapshot;

  token = () => this.accessToken;

  refreshToken = () => this.storage.getItem(REFRESH_KEY);

  /** The guest cart's token while signed out; the server issues one on first use. */
  guestCart = async () => {
    if (this.snapshot.signedIn) return undefined;
    const stored = this.storage.getItem(GUEST_CART_KEY);
    if (stored) return stored;
    this.issuingGuestCart ??= this.issueGuestCart()
      .then((token) => {
        if (token) this.storage.setItem(GUEST_CART_KEY, token);
        return token;
      })
      .finally(() => {
        this.issuingGuestCart = undefined;
      });
    return this.issuingGuestCart;
  };

  /** The guest cart's token, if a guest cart was started on this device. */
  storedGuestCart = () => this.storage.getItem(GUEST_CART_KEY);

  forgetGuestCart() {
    this.storage.removeItem(GUEST_CART_KEY);
  }

  signIn(pair: TokenPair) {
    this.accessToken = pair.accessToken;
    this.storage.setItem(REFRESH_KEY, pair.refreshToken);
    this.publish({ signedIn: true, ...tokenIdentity(pair.accessToken) });
  }

  signOut() {
    this.accessToken = undefined;
    this.storage.removeItem(REFRESH_KEY);
    this.publish({ signedIn: false });
  }

  /** One refresh at a time; `false` when the session is over (signed out). */
  refresh(): Promise<boolean> {
    const refreshToken = this.refreshToken();
    if (!refreshToken) return Promise.resolve(false);
    this.refreshing ??= this.refreshWith(refreshToken)
      .then((pair) => {
        if (pair) {
          this.signIn(pair);
          return true;
        }
        this.signOut();
        return false;
      })
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  private publish(state: SessionState) {
    this.snapshot = state;
    for (const listener of this.listeners) listener();
  }
}

/** The API client bound to a session: tokens on requests, refresh-and-retry on 401. */
export function createSessionClient(options: {
  baseUrl: string;
  storage: Storage;
  fetch?: typeof globalThis.fetch;
}) {
  const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  const bare = createApiClient({ baseUrl: options.baseUrl, fetch: fetchFn });
  const session = new SessionStore(
    options.storage,
    async (refreshToken) => {
      const { data, response } = await bare.POST("/v1/auth/refresh", { body: { refreshToken } });
      if (data) return data;
      // A network failure is not the end of the session; 400/401 are.
      if (response.status >= 500) throw new Error(`refresh failed: ${response.status}`);
      return undefined;
    },
    async () => (await bare.POST("/v1/cart/guest")).data?.guestCart,
  );
  const api = createApiClient({
    baseUrl: options.baseUrl,
    fetch: fetchFn,
    accessToken: session.token,
    guestCart: session.guestCart,
  });
  // A request's body is read when it is sent: keep an unread copy for the retry.
  const unsent = new WeakMap<Request, Request>();
  const retryOnExpiry: Middleware = {
    onRequest({ request }) {
      unsent.set(request, request.clone());
      return request;
    },
    async onResponse({ request, response }) {
      const path = new URL(request.url).pathname;
      if (response.status !== 401 || path.startsWith("/v1/auth/")) return response;
      const copy = unsent.get(request);
      const staleGuestCart = request.headers.get("X-Guest-Cart");
      if (staleGuestCart && !request.headers.has("Authorization")) {
        // A token the shop no longer honours (its key was rotated): start a new guest cart.
        if (session.storedGuestCart() === staleGuestCart) session.forgetGuestCart();
        const fresh = await session.guestCart();
        if (!copy || !fresh) return response;
        copy.headers.set("X-Guest-Cart", fresh);
        return fetchFn(copy);
      }
      if (!copy || !(await session.refresh())) return response;
      copy.headers.set("Authorization", `Bearer ${session.token()}`);
      copy.headers.delete("X-Guest-Cart");
      return fetchFn(copy);
    },
  };
  api.use(retryOnExpiry);
  return { api, session };
}

/**
 * After sign-in, the lines of this device's guest cart join the user's cart. The token is
 * kept when the server could not answer, so the next sign-in tries again.
 */
export async function mergeGuestCart(api: ApiClient, session: SessionStore) {
  const guestCart = session.storedGuestCart();
  if (!guestCart) return;
  const { response } = await api.POST("/v1/cart/merge", { body: { guestCart } });
  if (response.status < 500) session.forgetGuestCart();
}
