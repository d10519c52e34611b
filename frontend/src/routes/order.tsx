// One order, followed live: the GraphQL subscription `orderStatus` (SSE through the
// gateway) says each status as it is committed, with the order's items and their products
// from the product subgraph; each change re-reads the order over REST for its totals and
// payment. While the subscription is down the page polls instead. The offline gateway's
// "pay" step is offered while payment is due; an admin may refund a paid order here.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useParams } from "@tanstack/react-router";
import { useEffect, useState } from "react";
import { useApi } from "../api/context";
import { API_BASE } from "../config";
import { StripePayment } from "../components/StripePayment";
import { followEvents } from "../events";
import { usePaymentGateways } from "./payment-gateways";
import { formatMoney } from "../format";
import { useSession, useSessionStore } from "../session-context";
import { StaffRefund } from "../components/StaffRefund";
import { STATUS_TEXT } from "./order-status";

const ORDER_STATUS_SUBSCRIPTION = `subscription ($id: ID!) {
  orderStatus(id: $id) { orderId status order { items { quantity product { id name images } } } }
}`;

interface StatusChange {
  status: string;
  products: { id: string; name: string; images: string[] }[];
}

/** The order's status as the subscription tells it; `live` while the stream is open. */
export function useOrderStatusStream(orderId: string, fetch?: typeof globalThis.fetch) {
  const store = useSessionStore();
  const [change, setChange] = useState<StatusChange | null>(null);
  const [live, setLive] = useState(false);
  useEffect(() => {
    const stop = new AbortController();
    void followEvents({
      url: `${API_BASE}/graphql`,
      session: store,
      fetch,
      signal: stop.signal,
      onConnected: setLive,
      request: () => ({
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: ORDER_STATUS_SUBSCRIPTION, variables: { id: orderId } }),
      }),
      onEvent: (event) => {
        if (event.event === "complete") {
          // A final status: nothing more will happen to this order.
          stop.abort();
          setLive(false);
          return;
        }
        const result = JSON.parse(event.data) as {
          data?: { orderStatus?: { status: string; order?: { items: { product: StatusChange["products"][number] }[] } } };
        };
        const next = result.data?.orderStatus;
        if (next) {
          setChange({ status: next.status, products: next.order?.items.map((item) => item.product) ?? [] });
        }
      },
    }).finally(() => setLive(false));
    return () => stop.abort();
  }, [orderId, store, fetch]);
  return { change, live };
}

export const Route = createLazyRoute("/orders/$orderId")({ component: OrderPage });

// Nothing happens to an order after these (the subscription ends there too).
const FINAL = new Set(["DELIVERED", "EXPIRED", "CANCELED", "FAILED"]);
// The money was taken: what an admin may refund.
const PAID = new Set(["PAID", "CONFIRMED", "SHIPPED", "DELIVERED"]);

export function OrderPage() {
  const { orderId } = useParams({ from: "/orders/$orderId" });
  const api = useApi();
  const session = useSession();
  const queryClient = useQueryClient();
  const stream = useOrderStatusStream(orderId);
  const order = useQuery({
    queryKey: ["order", orderId],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/orders/{id}", { params: { path: { id: orderId } } });
      if (error) throw new Error(error.error.message);
      return data;
    },
    // Polling only stands in for the subscription while it is down.
    refetchInterval: (query) =>
      stream.live || (query.state.data && FINAL.has(query.state.data.status)) ? false : 3000,
  });
  const streamed = stream.change?.status;
  useEffect(() => {
    if (streamed) void queryClient.invalidateQueries({ queryKey: ["order", orderId] });
  }, [streamed, orderId, queryClient]);
  const gateways = usePaymentGateways();
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
  const { items, totals, currency, paymentId, paymentGateway, clientSecret, refundedAmount, history } = order.data;
  const flow = gateways.data?.find((gateway) => gateway.code === paymentGateway);
  // The stream is ahead of the REST read for the moment between a change and its re-read.
  const status = stream.change?.status ?? order.data.status;
  const imageOf = (productId: string) => stream.change?.products.find((p) => p.id === productId)?.images[0];
  return (
    <article>
      <h1>Order {order.data.id.slice(0, 8)}</h1>
      <p role="status" aria-live="polite" data-testid="order-status">
        {STATUS_TEXT[status] ?? status}
      </p>
      <p className="muted" data-testid="order-live">
        {stream.live ? "Following live" : FINAL.has(status) ? "" : "Checking every few seconds"}
      </p>
      <ul>
        {items.map((item) => (
          <li key={item.productId}>
            {imageOf(item.productId) ? <img src={imageOf(item.productId)} alt="" width={48} height={48} /> : null}
            <Link to="/products/$productId" params={{ productId: item.productId }}>
              {item.name}
            </Link>{" "}
            ×{item.quantity} — {currency ? formatMoney(item.unitPrice, currency) : item.unitPrice}
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
      {currency && Number(refundedAmount) > 0 ? (
        <p data-testid="order-refunded">Refunded {formatMoney(refundedAmount, currency)}</p>
      ) : null}
      {status === "PENDING_PAYMENT" && paymentId && paymentGateway === "offline" ? (
        <p>
          <button type="button" disabled={pay.isPending} onClick={() => pay.mutate(paymentId)}>
            {pay.isPending ? "Paying…" : "Pay now"}
          </button>
          {pay.isError ? <span role="alert"> {pay.error.message}</span> : null}
        </p>
      ) : null}
      {status === "PENDING_PAYMENT" && clientSecret && flow?.flow === "stripeElements" && flow.publishableKey ? (
        <StripePayment
          publishableKey={flow.publishableKey}
          clientSecret={clientSecret}
          onConfirmed={() => void queryClient.invalidateQueries({ queryKey: ["order", orderId] })}
        />
      ) : null}
      {status === "PENDING_PAYMENT" && clientSecret && flow?.flow === "redirect" && /^https:\/\//.test(clientSecret) ? (
        <p>
          <a href={clientSecret}>Pay on {paymentGateway}'s page</a>
        </p>
      ) : null}
      {session.role === "admin" && currency && PAID.has(status) ? (
        <StaffRefund
          orderId={order.data.id}
          currency={currency}
          onRefunded={() => void queryClient.invalidateQueries({ queryKey: ["order", orderId] })}
        />
      ) : null}
      {history && history.length > 0 ? (
        <section aria-label="Order history">
          <h2>History</h2>
          <ol>
            {history.map((entry, index) => (
              <li key={index}>
                {new Date(entry.at).toLocaleString()} — {STATUS_TEXT[entry.status] ?? entry.status}
                {entry.reason ? `: ${entry.reason}` : ""}
              </li>
            ))}
          </ol>
        </section>
      ) : null}
    </article>
  );
}
