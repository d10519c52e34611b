// Every customer's orders, newest first, with the fulfillment step staff report by hand
// (shipped, then delivered) when no carrier webhook does it.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute } from "@tanstack/react-router";
import { useApi } from "../api/context";
import { formatMoney } from "../format";
import { STATUS_TEXT, useOrderPages } from "./order-status";

export const Route = createLazyRoute("/admin/orders")({ component: AdminOrders });

const NEXT_STEP: Record<string, "SHIPPED" | "DELIVERED"> = { CONFIRMED: "SHIPPED", SHIPPED: "DELIVERED" };

export function AdminOrders() {
  const api = useApi();
  const queryClient = useQueryClient();
  const orders = useOrderPages("admin-orders", { pageSize: 25, refetchInterval: 5000 });
  const report = useMutation({
    mutationFn: async ({ orderId, status }: { orderId: string; status: "SHIPPED" | "DELIVERED" }) => {
      const { error } = await api.PATCH("/v1/admin/fulfillments/{orderId}", {
        params: { path: { orderId } },
        body: { status },
      });
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["admin-orders"] }),
  });
  if (orders.isPending) return <p role="status">Loading orders…</p>;
  if (orders.isError) return <p role="alert">Orders could not be loaded: {orders.error.message}</p>;
  const all = orders.data.pages.flatMap((page) => page.items);
  return (
    <section>
      <h1>Orders</h1>
      {report.isError ? <p role="alert">{report.error.message}</p> : null}
      {all.length === 0 ? <p>No orders yet.</p> : null}
      <table>
        <thead>
          <tr>
            <th scope="col">Order</th>
            <th scope="col">Placed</th>
            <th scope="col">Ship to</th>
            <th scope="col">Status</th>
            <th scope="col">Total</th>
            <th scope="col">Fulfillment</th>
          </tr>
        </thead>
        <tbody>
          {all.map((order) => {
            const step = NEXT_STEP[order.status];
            return (
              <tr key={order.id} data-testid={`admin-order-${order.id}`}>
                <td>
                  <Link to="/orders/$orderId" params={{ orderId: order.id }}>
                    {order.id.slice(0, 8)}
                  </Link>
                </td>
                <td>{new Date(order.createdAt).toLocaleString()}</td>
                <td>
                  {order.shippingAddress
                    ? `${order.shippingAddress.recipient}, ${order.shippingAddress.city} ${order.shippingAddress.country}`
                    : "—"}
                </td>
                <td>{STATUS_TEXT[order.status] ?? order.status}</td>
                <td className="price">
                  {order.totals && order.currency ? formatMoney(order.totals.total, order.currency) : "—"}
                </td>
                <td>
                  {step ? (
                    <button
                      type="button"
                      disabled={report.isPending}
                      onClick={() => report.mutate({ orderId: order.id, status: step })}
                    >
                      {step === "SHIPPED" ? "Mark shipped" : "Mark delivered"}
                    </button>
                  ) : null}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {orders.hasNextPage ? (
        <button type="button" disabled={orders.isFetchingNextPage} onClick={() => void orders.fetchNextPage()}>
          Older orders
        </button>
      ) : null}
    </section>
  );
}
