// Compile-time checks of the generated client: `tsc --noEmit` fails when a documented call
// stops type-checking, or when an undocumented one starts to (`@ts-expect-error` lines).
import { createApiClient, type OrderStatus } from "./client";

const api = createApiClient({ baseUrl: "http://localhost:8080" });

export async function documentedCalls(): Promise<void> {
  const listing = await api.GET("/v1/products", {
    params: { query: { pageSize: 5, sort: "price_asc", inStock: true } },
  });
  if (listing.data) {
    const amount: string | undefined = listing.data.items[0]?.price.amount;
    const total: number = listing.data.total;
    void amount;
    void total;
  }
  if (listing.error) {
    const code: string = listing.error.error.code;
    void code;
  }
  const placed = await api.POST("/v1/orders", {
    params: { header: { "Idempotency-Key": "attempt-1" } },
    body: { checkoutSessionId: "0190b3c4-0000-7000-8000-000000000001" },
  });
  const status: OrderStatus | undefined = placed.data?.order.status;
  void status;
  await api.PATCH("/v1/admin/fulfillments/{orderId}", {
    params: { path: { orderId: "0190b3c4-0000-7000-8000-000000000001" } },
    body: { status: "SHIPPED" },
  });
}

export async function undocumentedCalls(): Promise<void> {
  // @ts-expect-error: no such path
  await api.GET("/v1/nothing-here");
  // @ts-expect-error: `sort` takes only the documented values
  await api.GET("/v1/products", { params: { query: { sort: "cheapest" } } });
  // @ts-expect-error: placing an order needs its Idempotency-Key
  await api.POST("/v1/orders", { body: { checkoutSessionId: "x" } });
  await api.PATCH("/v1/admin/fulfillments/{orderId}", {
    params: { path: { orderId: "x" } },
    // @ts-expect-error: a shipment is only reported SHIPPED or DELIVERED
    body: { status: "LOST" },
  });
}
