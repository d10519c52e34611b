// The back office's task queues: counts and dead tasks for staff, "run again" and "drop"
// for admins only, through the real router, query cache and typed client over a fake
// network.
import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { json, renderShop } from "../test-shop";

afterEach(cleanup);

const dead = {
  id: "order:0199:expire",
  kind: "expire",
  attempts: 5,
  maxAttempts: 5,
  dueAt: "2026-12-07T10:00:00.000Z",
  error: "payment: unavailable",
  payload: { orderId: "0199" },
};

function queues(deadTasks: (typeof dead)[]) {
  return ({ url, method }: { url: URL; method: string }) => {
    if (!url.pathname.startsWith("/v1/admin/tasks/")) return undefined;
    if (method === "DELETE") return new Response(null, { status: 204 });
    if (method === "POST") return json(200, { id: dead.id, outcome: "scheduled" });
    if (url.pathname === "/v1/admin/tasks/order")
      return json(200, {
        queue: "order-tasks",
        counts: { scheduled: 12, retrying: 1, running: 0, dead: deadTasks.length },
        dead: deadTasks,
      });
    if (url.pathname === "/v1/admin/tasks/cart")
      return json(200, { queue: "cart-tasks", counts: { scheduled: 3, retrying: 0, running: 1, dead: 0 }, dead: [] });
    return undefined;
  };
}

describe("task queues", () => {
  it("shows each queue's counts and lets an admin run a dead task again or drop it", async () => {
    const { calls } = renderShop("/admin/tasks", queues([dead]), { role: "admin" });
    const orders = await screen.findByTestId("task-queue-order");
    const table = await within(orders).findByRole("table", { name: "Dead tasks" });
    expect(within(table).getByText("payment: unavailable")).toBeTruthy();
    expect(within(table).getByText("5 of 5")).toBeTruthy();
    expect(within(await screen.findByTestId("task-queue-cart")).getByText("No dead tasks.")).toBeTruthy();

    fireEvent.click(within(table).getByRole("button", { name: "Run again" }));
    await waitFor(() =>
      expect(calls.some((call) => call.method === "POST" && call.url.pathname === `/v1/admin/tasks/order/dead/${encodeURIComponent(dead.id)}/retry`)).toBe(true),
    );
    await waitFor(() => expect(within(table).getByRole("button", { name: "Drop" }).hasAttribute("disabled")).toBe(false));
    fireEvent.click(within(table).getByRole("button", { name: "Drop" }));
    await waitFor(() =>
      expect(calls.some((call) => call.method === "DELETE" && call.url.pathname === `/v1/admin/tasks/order/dead/${encodeURIComponent(dead.id)}`)).toBe(true),
    );
  });

  it("shows support staff the dead tasks without the actions", async () => {
    renderShop("/admin/tasks", queues([dead]), { role: "support" });
    const orders = await screen.findByTestId("task-queue-order");
    const table = await within(orders).findByRole("table", { name: "Dead tasks" });
    expect(within(table).getByText(dead.id)).toBeTruthy();
    expect(within(table).queryByRole("button")).toBeNull();
  });
});
