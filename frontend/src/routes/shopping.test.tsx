// Cart promo codes, checkout with priced couriers, and the notification bell, through the
// real router and client over a fake network.
import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { json, renderShop } from "../test-shop";

afterEach(cleanup);

const line = { productId: "p1", sku: "MUG", name: "Blue mug", quantity: 3, unitPrice: "12.50", currency: "USD", lineTotal: "37.50" };
const cart = (promo: unknown, discount = "0.00", total = "37.50") => ({
  id: "c1",
  items: [line],
  promo,
  subtotal: "37.50",
  discount,
  total,
  currency: "USD",
});

describe("cart promo code", () => {
  it("shows the server's refusal on the field, then applies a code and reprices", async () => {
    const { calls } = renderShop(
      "/cart",
      ({ method, url, body }) => {
        if (url.pathname === "/v1/cart") return json(200, cart(null));
        if (url.pathname === "/v1/cart/promo" && method === "POST") {
          const { code } = body as { code: string };
          return code === "SAVE10"
            ? json(200, cart({ code: "SAVE10", applies: true, reason: null }, "3.75", "33.75"))
            : json(404, { error: { code: "not_found", message: `promo code ${code} does not exist`, field: "code" } });
        }
        return undefined;
      },
      { role: "customer" },
    );
    const input = await screen.findByLabelText("Promo code");
    fireEvent.change(input, { target: { value: "NOPE" } });
    fireEvent.click(screen.getByRole("button", { name: "Apply" }));
    expect((await screen.findByRole("alert")).textContent).toContain("promo code NOPE does not exist");
    expect(input.getAttribute("aria-invalid")).toBe("true");

    fireEvent.change(input, { target: { value: " SAVE10 " } });
    fireEvent.click(screen.getByRole("button", { name: "Apply" }));
    expect((await screen.findByTestId("promo-state")).textContent).toContain("applied");
    expect(screen.getByTestId("cart-total").textContent).toBe("$33.75");
    expect(calls.filter((c) => c.url.pathname === "/v1/cart/promo").map((c) => c.body)).toEqual([
      { code: "NOPE" },
      { code: "SAVE10" },
    ]);
  });
});

describe("cart quantities", () => {
  it("shows a new quantity at once and puts the old one back when the server refuses", async () => {
    let release: (reply: ReturnType<typeof json>) => void = () => undefined;
    renderShop(
      "/cart",
      ({ method, url }) => {
        if (url.pathname === "/v1/cart") return json(200, cart(null));
        if (method === "PUT" && url.pathname === "/v1/cart/items/p1") {
          return new Promise<ReturnType<typeof json>>((resolve) => (release = resolve));
        }
        return undefined;
      },
      { role: "customer" },
    );
    const quantity = (await screen.findByLabelText("Quantity of Blue mug")) as HTMLInputElement;
    fireEvent.change(quantity, { target: { value: "5" } });
    await waitFor(() => expect(quantity.value).toBe("5"));
    release(json(409, { error: { code: "conflict", message: "only 4 in stock", field: "quantity" } }));
    expect((await screen.findByRole("alert")).textContent).toContain("only 4 in stock");
    expect(quantity.value).toBe("3");
  });
});

describe("checkout", () => {
  it("prices each courier for the parcel and shows the total with shipping before placing", async () => {
    const { calls } = renderShop(
      "/checkout",
      ({ url }) => {
        if (url.pathname === "/v1/cart") return json(200, cart(null));
        if (url.pathname === "/v1/users/me/addresses") {
          return json(200, {
            items: [
              {
                id: "a1",
                label: "",
                recipient: "Sam Lee",
                line1: "1 Main St",
                line2: "",
                city: "Springfield",
                region: "",
                postalCode: "12345",
                country: "US",
                phone: "",
                isDefault: true,
              },
            ],
          });
        }
        if (url.pathname === "/v1/payments/gateways") {
          return json(200, {
            items: [
              { code: "stripe", flow: "stripeElements", publishableKey: "pk_test_1" },
              { code: "offline", flow: "offline" },
            ],
          });
        }
        if (url.pathname === "/v1/checkout") {
          return json(409, { error: { code: "conflict", message: "a product's price changed; review the cart" } });
        }
        if (url.pathname === "/v1/shipping/quotes") {
          return json(200, {
            country: "US",
            items: [
              { courier: "express", name: "Express courier", cost: "14.90", currency: "USD", estimatedDays: 2, weightGrams: 1500 },
              { courier: "standard", name: "Standard post", cost: "8.90", currency: "USD", estimatedDays: 5, weightGrams: 1500 },
            ],
          });
        }
        return undefined;
      },
      { role: "customer" },
    );
    expect(await screen.findByRole("radio", { name: /Express courier — \$14\.90/ })).toBeTruthy();
    expect(screen.getByTestId("checkout-total").textContent).toBe("$52.40");
    fireEvent.click(screen.getByRole("radio", { name: /Standard post/ }));
    await waitFor(() => expect(screen.getByTestId("checkout-total").textContent).toBe("$46.40"));
    expect(screen.getByTestId("checkout-shipping").textContent).toBe("$8.90");
    const asked = calls.find((c) => c.url.pathname === "/v1/shipping/quotes")!;
    expect(Object.fromEntries(asked.url.searchParams)).toEqual({ country: "US", units: "3" });

    // Stripe is configured, so it is offered first; the shopper picks the offline gateway.
    expect((screen.getByRole("radio", { name: "Card (Stripe)" }) as HTMLInputElement).checked).toBe(true);
    fireEvent.click(screen.getByRole("radio", { name: /test gateway/ }));
    fireEvent.click(screen.getByRole("button", { name: "Place order" }));
    expect((await screen.findByRole("alert")).textContent).toContain("a product's price changed");
    expect(calls.find((c) => c.url.pathname === "/v1/checkout")?.body).toEqual({
      addressId: "a1",
      courier: "standard",
      paymentGateway: "offline",
    });
  });
});

describe("notification bell", () => {
  it("counts what the stream says and lists it", async () => {
    const encoder = new TextEncoder();
    renderShop(
      "/cart",
      ({ url }) => {
        if (url.pathname === "/v1/notifications/stream") {
          const notification = {
            id: "n3",
            seq: 3,
            kind: "order_confirmed",
            title: "Order confirmed",
            body: "Order 1234 is confirmed.",
            data: { order_id: "o1" },
            createdAt: "2026-12-01T00:00:00Z",
            readAt: null,
          };
          const body = new ReadableStream({
            start(controller) {
              controller.enqueue(encoder.encode(': keep-alive\n\nevent: unread\ndata: {"unread": 2}\n\n'));
              // Split across chunks, as a network may.
              const frame = `event: notification\nid: 3\ndata: ${JSON.stringify(notification)}\n\n`;
              controller.enqueue(encoder.encode(frame.slice(0, 20)));
              controller.enqueue(encoder.encode(frame.slice(20)));
            },
          });
          return new Response(body, { headers: { "content-type": "text/event-stream" } });
        }
        if (url.pathname === "/v1/notifications") return json(200, { items: [], nextBefore: null });
        return undefined;
      },
      { role: "customer" },
    );
    const bell = await screen.findByTestId("notification-bell");
    await waitFor(() => expect(bell.textContent).toBe("Notifications 3"));
    fireEvent.click(bell);
    const panel = await screen.findByRole("region", { name: "Notifications" });
    expect(within(panel).getByText("Order confirmed")).toBeTruthy();
    fireEvent.keyDown(panel, { key: "Escape" });
    expect(screen.queryByRole("region", { name: "Notifications" })).toBeNull();
  });
});
