// The customer's orders, newest first, a page at a time.
import { Link, createLazyRoute } from "@tanstack/react-router";
import { formatMoney } from "../format";
import { useSession } from "../session-context";
import { STATUS_TEXT, useOrderPages } from "./order-status";

export const Route = createLazyRoute("/orders")({ component: OrdersPage });

export function OrdersPage() {
  const session = useSession();
  const orders = useOrderPages("orders", { pageSize: 20, enabled: session.signedIn });
  if (!session.signedIn) {
    return (
      <p>
        <Link to="/login">Sign in</Link> to see your orders.
      </p>
    );
  }
  if (orders.isPending) return <p role="status">Loading your orders…</p>;
  if (orders.isError) return <p role="alert">Your orders could not be loaded: {orders.error.message}</p>;
  const all = orders.data.pages.flatMap((page) => page.items);
  return (
    <section>
      <h1>Your orders</h1>
      {all.length === 0 ? (
        <p>
          No orders yet. <Link to="/" search={{}}>Browse the catalogue</Link>
        </p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Order</th>
              <th scope="col">Placed</th>
              <th scope="col">Items</th>
              <th scope="col">Status</th>
              <th scope="col">Total</th>
            </tr>
          </thead>
          <tbody>
            {all.map((order) => (
              <tr key={order.id}>
                <td>
                  <Link to="/orders/$orderId" params={{ orderId: order.id }}>
                    {order.id.slice(0, 8)}
                  </Link>
                </td>
                <td>{new Date(order.createdAt).toLocaleString()}</td>
                <td>{order.items.reduce((sum, item) => sum + item.quantity, 0)}</td>
                <td data-testid="orders-status">{STATUS_TEXT[order.status] ?? order.status}</td>
                <td className="price">
                  {order.totals && order.currency ? formatMoney(order.totals.total, order.currency) : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {orders.hasNextPage ? (
        <button type="button" disabled={orders.isFetchingNextPage} onClick={() => void orders.fetchNextPage()}>
          {orders.isFetchingNextPage ? "Loading…" : "Older orders"}
        </button>
      ) : null}
    </section>
  );
}
