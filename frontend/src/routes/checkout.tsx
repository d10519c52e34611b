// Checkout: where it goes (an address from the book, or a new one), how (courier), and
// the order placed with an idempotency key kept for this attempt, so a double click or a
// retried request places one order.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useNavigate } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { AddressForm } from "../components/AddressForm";
import { addDecimals, formatMoney } from "../format";
import { useSession } from "../session-context";
import { usePaymentGateways } from "./payment-gateways";

export const Route = createLazyRoute("/checkout")({ component: Checkout });

const GATEWAY_NAMES: Record<string, string> = {
  offline: "Pay on the order page (test gateway)",
  stripe: "Card (Stripe)",
  xendit: "Xendit (bank transfer, e-wallet, card)",
};

export function Checkout() {
  const api = useApi();
  const session = useSession();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [addressId, setAddressId] = useState<string | null>(null);
  const [courier, setCourier] = useState<string | null>(null);
  const [gateway, setGateway] = useState<string | null>(null);
  const gateways = usePaymentGateways();
  const chosenGateway = gateway ?? gateways.data?.[0]?.code ?? "offline";
  // One key per checkout attempt: a retry of the same attempt gets the same order.
  const [idempotencyKey] = useState(() => crypto.randomUUID());

  const addresses = useQuery({
    queryKey: ["addresses"],
    enabled: session.signedIn,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/users/me/addresses");
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  const cart = useQuery({
    queryKey: ["cart"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/cart");
      if (error) throw new Error(error.error.message);
      return data;
    },
  });

  const selectedAddress =
    addressId ?? addresses.data?.find((a) => a.isDefault)?.id ?? addresses.data?.[0]?.id ?? null;
  const country = addresses.data?.find((a) => a.id === selectedAddress)?.country;
  const units = cart.data?.items.reduce((sum, line) => sum + line.quantity, 0) ?? 0;
  // What each courier charges for this parcel to this country, priced as the order will be.
  const quotes = useQuery({
    queryKey: ["shipping-quotes", country, units],
    enabled: Boolean(country) && units > 0,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/shipping/quotes", {
        params: { query: { country: country!, units } },
      });
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  const chosenQuote = quotes.data?.find((q) => q.courier === courier) ?? quotes.data?.[0];

  const place = useMutation({
    mutationFn: async () => {
      const chosenAddress = selectedAddress;
      const chosenCourier = chosenQuote?.courier;
      if (!chosenAddress || !chosenCourier) throw new Error("Choose an address and a courier.");
      const started = await api.POST("/v1/checkout", {
        body: { addressId: chosenAddress, courier: chosenCourier, paymentGateway: chosenGateway },
      });
      if (!started.data) throw new Error(started.error?.error.message ?? "Checkout failed.");
      const placed = await api.POST("/v1/orders", {
        params: { header: { "Idempotency-Key": idempotencyKey } },
        body: { checkoutSessionId: started.data.id },
      });
      if (!placed.data) throw new Error(placed.error?.error.message ?? "The order could not be placed.");
      return placed.data;
    },
    onSuccess: async (placed) => {
      await queryClient.invalidateQueries({ queryKey: ["cart"] });
      await navigate({ to: "/orders/$orderId", params: { orderId: placed.orderId } });
    },
  });

  if (!session.signedIn) {
    return (
      <p>
        <Link to="/login">Sign in</Link> to check out.
      </p>
    );
  }
  if (addresses.isPending || cart.isPending) return <p role="status">Loading…</p>;
  if (addresses.isError || cart.isError) {
    return <p role="alert">Checkout could not be loaded.</p>;
  }

  return (
    <section aria-busy={place.isPending}>
      <h1>Checkout</h1>
      <h2>Deliver to</h2>
      {addresses.data.length > 0 ? (
        <fieldset>
          <legend>Address</legend>
          {addresses.data.map((address) => (
            <label key={address.id} className="choice">
              <input
                type="radio"
                name="address"
                checked={selectedAddress === address.id}
                onChange={() => setAddressId(address.id)}
              />
              {address.recipient}, {address.line1}, {address.postalCode} {address.city}, {address.country}
            </label>
          ))}
        </fieldset>
      ) : (
        <AddressForm makeDefault onSaved={(address) => setAddressId(address.id)} />
      )}
      <h2>Courier</h2>
      {!country ? <p>Add an address to see the couriers and what they charge.</p> : null}
      {quotes.isFetching && !quotes.data ? <p role="status">Pricing the delivery…</p> : null}
      {quotes.isError ? <p role="alert">Shipping could not be priced: {quotes.error.message}</p> : null}
      {quotes.data && quotes.data.length === 0 ? <p role="alert">No courier delivers this parcel to {country}.</p> : null}
      {quotes.data && quotes.data.length > 0 ? (
        <fieldset>
          <legend>Courier</legend>
          {quotes.data.map((quote) => (
            <label key={quote.courier} className="choice">
              <input
                type="radio"
                name="courier"
                value={quote.courier}
                checked={chosenQuote?.courier === quote.courier}
                onChange={() => setCourier(quote.courier)}
              />
              {quote.name} — <span className="price">{formatMoney(quote.cost, quote.currency)}</span>, about{" "}
              {quote.estimatedDays} days
            </label>
          ))}
        </fieldset>
      ) : null}
      <h2>Payment</h2>
      {gateways.isError ? <p role="alert">Payment options could not be loaded.</p> : null}
      {gateways.data && gateways.data.length > 1 ? (
        <fieldset>
          <legend>Pay with</legend>
          {gateways.data.map((option) => (
            <label key={option.code} className="choice">
              <input
                type="radio"
                name="gateway"
                value={option.code}
                checked={chosenGateway === option.code}
                onChange={() => setGateway(option.code)}
              />
              {GATEWAY_NAMES[option.code] ?? option.code}
            </label>
          ))}
        </fieldset>
      ) : (
        <p>{GATEWAY_NAMES[chosenGateway] ?? chosenGateway}</p>
      )}
      <h2>Your order</h2>
      <dl className="totals">
        <dt>Items ({units})</dt>
        <dd className="price">{formatMoney(cart.data.total, cart.data.currency)}</dd>
        <dt>Shipping</dt>
        <dd className="price" data-testid="checkout-shipping">
          {chosenQuote ? formatMoney(chosenQuote.cost, chosenQuote.currency) : "—"}
        </dd>
        {chosenQuote && chosenQuote.currency === cart.data.currency ? (
          <>
            <dt>Total</dt>
            <dd className="price" data-testid="checkout-total">
              {formatMoney(addDecimals(cart.data.total, chosenQuote.cost), cart.data.currency)}
            </dd>
          </>
        ) : null}
      </dl>
      <p>You pay on the next page.</p>
      {place.isError ? <p role="alert">{place.error.message}</p> : null}
      <button
        type="button"
        disabled={!selectedAddress || !chosenQuote || cart.data.items.length === 0 || place.isPending}
        onClick={() => place.mutate()}
      >
        {place.isPending ? "Placing your order…" : "Place order"}
      </button>
    </section>
  );
}
