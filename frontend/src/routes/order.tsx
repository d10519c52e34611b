// One order, followed live: the page re-reads it every second while something is still
// to happen (placing, waiting for the payment's confirmation), and offers the offline
// gateway's "pay" step while payment is due.
import { useMutation, useQuery } from "@tanstack/react-query";
import { createLazyRoute, useParams } from "@tanstack/react-router";
import { useApi } from "../api/context";
import { formatMoney } from "../format";

export const Route = createLazyRoute("/orders/$orderId")({ component: OrderPage });

const SETTLED = new Set(["CONFIRMED", "SHIPPED", "DELIVERED", "EXPIRED", "CANCELED", "FAILED"]);
const STATUS_TEXT: Record<string, string> = {
  PLACING: "Placing your order…",
  PENDING_PAYMENT: "Waiting for your payment",
  PAID: "Paid — confirming…",
  CONFIRMED: "Confirmed",
  SHIPPED: "Shipped",
  DELIVERED: "Delivered",
  EXPIRED: "Expired (not paid in time)",
  CANCELED: "Canceled",
  FAILED: "Could not be placed",
};

export function OrderPage() {
  const { orderId } = useParams({ from: "/orders/$orderId" });
  const api = useApi();
  const order = useQuery({
    queryKey: ["order", orderId],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/orders/{id}", { params: { path: { id: orderId } } });
      if (error) throw new Error(error.error.message);
      return data;
    },
    refetchInterval: (query) => (query.state.data && SETTLED.has(query.state.data.status) ? false : 1000),
  });
  const pay = useMutation({
    mutationFn: async (paymentId: string) => {
      const { error } = await api.POST("/v1/payments/{id}/offline/pay", {
        params: { path: { id: paymentId } },
        body: { outcome: "succeeded" },
      });
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => void order.refetch(),
  });

  if (order.isPending) return <p role="status">Loading your order…</p>;
  if (order.isError) return <p role="alert">The order could not be loaded: {order.error.message}</p>;
  const { status, items, totals, currency, paymentId, paymentGateway } = order.data;
  return (
    <article>
      <h1>Order {order.data.id.slice(0, 8)}</h1>
      <p role="status" aria-live="polite" data-testid="order-status">
        {STATUS_TEXT[status] ?? status}
      </p>
      <ul>
        {items.map((item) => (
          <li key={item.productId}>
            {item.quantity} × {item.name} — {currency ? formatMoney(item.unitPrice, currency) : item.unitPrice}
          </li>
        ))}
      </ul>
      {totals && currency ? (
        <dl className="totals">
          <dt>Subtotal</dt>
          <dd className="price">{formatMoney(totals.subtotal, currency)}</dd>
          <dt>Discount</dt>
          <dd className="price">{formatMoney(totals.discount, currency)}</dd>
          <dt>Shipping</dt>
          <dd className="price">{formatMoney(totals.shipping, currency)}</dd>
          <dt>Total</dt>
          <dd className="price" data-testid="order-total">
            {formatMoney(totals.total, currency)}
          </dd>
        </dl>
      ) : null}
      {status === "PENDING_PAYMENT" && paymentId && paymentGateway === "offline" ? (
        <p>
          <button type="button" disabled={pay.isPending} onClick={() => pay.mutate(paymentId)}>
            {pay.isPending ? "Paying…" : "Pay now"}
          </button>
          {pay.isError ? <span role="alert"> {pay.error.message}</span> : null}
        </p>
      ) : null}
    </article>
  );
}
