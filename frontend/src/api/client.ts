// The storefront's REST client. Paths, parameters, bodies and answers are typed from
// `schema.d.ts`, which `npm run generate:api` makes from openapi/openapi.yaml: a call the
// API does not document does not compile, and CI fails when the two differ.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };
type Schemas = components["schemas"];
export type ApiError = Schemas["Error"];
export type User = Schemas["User"];
export type TokenPair = Schemas["TokenPair"];
export type Address = Schemas["Address"];
export type Product = Schemas["Product"];
export type SearchHit = Schemas["SearchHit"];
export type Cart = Schemas["Cart"];
export type CheckoutSession = Schemas["CheckoutSession"];
export type Order = Schemas["Order"];
export type OrderStatus = Schemas["OrderStatus"];
export type Payment = Schemas["Payment"];
export type Fulfillment = Schemas["Fulfillment"];

export interface ClientOptions {
  /** The gateway; empty for the page's own origin. */
  baseUrl?: string;
  /** The current access token, if signed in. */
  accessToken?: () => string | undefined;
  /** The guest cart's token for cart calls while signed out (issued by the server). */
  guestCart?: () => Promise<string | undefined>;
  fetch?: typeof globalThis.fetch;
}

export function createApiClient(options: ClientOptions = {}) {
  const client = createClient<paths>({
    baseUrl: options.baseUrl ?? "",
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const credentials: Middleware = {
    async onRequest({ request, schemaPath }) {
      const token = options.accessToken?.();
      if (token) {
        request.headers.set("Authorization", `Bearer ${token}`);
      } else if (isGuestCartCall(schemaPath)) {
        const guest = await options.guestCart?.();
        if (guest) request.headers.set("X-Guest-Cart", guest);
      }
      return request;
    },
  };
  client.use(credentials);
  return client;
}

export type ApiClient = ReturnType<typeof createApiClient>;

/** Cart calls a guest makes with the guest cart's token (not the one that issues it). */
function isGuestCartCall(schemaPath: string) {
  return (schemaPath === "/v1/cart" || schemaPath.startsWith("/v1/cart/")) && schemaPath !== "/v1/cart/guest";
}
