// An order's page: its history and what was refunded, and for an admin the refund form
// (an amount or everything left, a reason), through the real router, query cache and
// typed client over a fake network.
import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { type Call, json, renderShop } from "../test-shop";

afterEach(cleanup);

const ORDER_ID = "0199abcd-0000-7000-8000-000000000001";

function order(refundedAmount: string) {
  return {
    id: ORDER_ID,
    userId: "00000000-0000-4000-8000-00000000000b",
    status: "CONFIRMED",
    checkoutSessionId: "0199abcd-0000-7000-8000-000000000002",
    items: [{ productId: "p1", sku: "MUG", name: "Mug", quantity: 2, unitPrice: "12.00" }],
    currency: "USD",
    totals: { subtotal: "24.00", discount: "0.00", shipping: "0.00", total: "24.00" },
    promoCode: null,
    shippingAddress: null,
    courier: null,
    paymentGateway: "offline",
    paymentId: "0199abcd-0000-7000-8000-000000000003",
    paymentDueAt: null,
    remindersSent: 0,
    failureReason: null,
    refundedAmount,
    createdAt: "2026-12-07T10:00:00Z",
    updatedAt: "2026-12-07T10:05:00Z",
    history: [
      { status: "PENDING_PAYMENT", reason: "placed", at: "2026-12-07T10:00:00Z" },
      { status: "CONFIRMED", reason: "paid", at: "2026-12-07T10:05:00Z" },
      ...(refundedAmount === "0.00"
        ? []
        : [{ status: "CONFIRMED", reason: "refunded 5.00 USD: a scratched mug", at: "2026-12-07T10:09:00Z" }]),
    ],
  };
}

function shop() {
  let refunded = "0.00";
  return ({ url, method, body }: Call) => {
    if (url.pathname === `/v1/orders/${ORDER_ID}`) return json(200, order(refunded));
    if (url.pathname === "/v1/payments/gateways") return json(200, { items: [] });
    if (url.pathname === `/v1/admin/orders/${ORDER_ID}/refunds` && method === "POST") {
      const { amount } = body as { amount: string | null; reason: string };
      if (amount === "99.00") {
        return json(400, {
          error: { code: "invalid_argument", field: "amount", message: "99.00 is more than the 24.00 left to refund" },
        });
      }
      refunded = "5.00";
      return json(201, {
        refundId: "0199abcd-0000-7000-8000-000000000004",
        amount: "5.00",
        currency: "USD",
        status: "succeeded",
        paymentStatus: "succeeded",
      });
    }
    return undefined;
  };
}

describe("an order's page", () => {
  it("lets an admin refund part of a paid order, refusing more than is left on the field", async () => {
    const { calls } = renderShop(`/orders/${ORDER_ID}`, shop(), { role: "admin" });
    const form = await screen.findByRole("form", { name: "Refund" });
    fireEvent.change(within(form).getByLabelText(/Refund amount/), { target: { value: "99.00" } });
    fireEvent.change(within(form).getByLabelText("Refund reason"), { target: { value: "a scratched mug" } });
    fireEvent.click(within(form).getByRole("button", { name: "Refund" }));
    expect((await within(form).findByRole("alert")).textContent).toContain("more than the 24.00 left");

    fireEvent.change(within(form).getByLabelText(/Refund amount/), { target: { value: "5.00" } });
    fireEvent.click(within(form).getByRole("button", { name: "Refund" }));
    expect((await screen.findByTestId("refund-done")).textContent).toBe("Refunded $5.00.");
    expect((await screen.findByTestId("order-refunded")).textContent).toBe("Refunded $5.00");
    const history = screen.getByRole("region", { name: "Order history" });
    await waitFor(() => expect(within(history).getByText(/refunded 5.00 USD: a scratched mug/)).toBeTruthy());

    const refunds = calls.filter((call) => call.url.pathname.endsWith("/refunds"));
    expect(refunds.map((call) => call.body)).toEqual([
      { amount: "99.00", reason: "a scratched mug" },
      { amount: "5.00", reason: "a scratched mug" },
    ]);
  });

  it("shows a customer the history but no refund form", async () => {
    renderShop(`/orders/${ORDER_ID}`, shop(), { role: "customer" });
    await screen.findByRole("region", { name: "Order history" });
    expect(screen.queryByRole("form", { name: "Refund" })).toBeNull();
  });
});
