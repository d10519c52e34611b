// Checkout: where it goes (an address from the book, or a new one), how (courier), and
// the order placed with an idempotency key kept for this attempt, so a double click or a
// retried request places one order.
import { useForm } from "@tanstack/react-form";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useNavigate } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";
import { formatMoney } from "../format";
import { useSession } from "../session-context";

export const Route = createLazyRoute("/checkout")({ component: Checkout });

type AddressField = "recipient" | "line1" | "city" | "postalCode" | "country";
const ADDRESS_FIELDS: [AddressField, string, string][] = [
  ["recipient", "Recipient", "name"],
  ["line1", "Street and number", "address-line1"],
  ["city", "City", "address-level2"],
  ["postalCode", "Postal code", "postal-code"],
  ["country", "Country (two letters)", "country"],
];
const ADDRESS_RULES: Record<AddressField, (value: string) => string | undefined> = {
  recipient: (value) => (value.trim() ? undefined : "Who receives it?"),
  line1: (value) => (value.trim() ? undefined : "Enter the street."),
  city: (value) => (value.trim() ? undefined : "Enter the city."),
  postalCode: (value) => (value.trim() ? undefined : "Enter the postal code."),
  country: (value) => (/^[A-Za-z]{2}$/.test(value.trim()) ? undefined : "Two letters, e.g. US."),
};

export function Checkout() {
  const api = useApi();
  const session = useSession();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [addressId, setAddressId] = useState<string | null>(null);
  const [courier, setCourier] = useState<string | null>(null);
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
  const couriers = useQuery({
    queryKey: ["couriers"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/shipping/couriers");
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

  const addAddress = useForm({
    defaultValues: { recipient: "", line1: "", city: "", postalCode: "", country: "" },
    onSubmit: async ({ value }) => {
      const { data, error } = await api.POST("/v1/users/me/addresses", {
        body: { ...value, country: value.country.trim().toUpperCase(), isDefault: true },
      });
      if (error) throw new Error(error.error.message);
      await queryClient.invalidateQueries({ queryKey: ["addresses"] });
      setAddressId(data.id);
    },
  });

  const place = useMutation({
    mutationFn: async () => {
      const chosenAddress = addressId ?? addresses.data?.find((a) => a.isDefault)?.id ?? addresses.data?.[0]?.id;
      const chosenCourier = courier ?? couriers.data?.[0]?.code;
      if (!chosenAddress || !chosenCourier) throw new Error("Choose an address and a courier.");
      const started = await api.POST("/v1/checkout", {
        body: { addressId: chosenAddress, courier: chosenCourier, paymentGateway: "offline" },
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
  if (addresses.isPending || couriers.isPending || cart.isPending) return <p role="status">Loading…</p>;
  if (addresses.isError || couriers.isError || cart.isError) {
    return <p role="alert">Checkout could not be loaded.</p>;
  }
  const selectedAddress = addressId ?? addresses.data.find((a) => a.isDefault)?.id ?? addresses.data[0]?.id ?? null;

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
        <form
          noValidate
          aria-label="New address"
          onSubmit={(event) => {
            event.preventDefault();
            void addAddress.handleSubmit();
          }}
        >
          {ADDRESS_FIELDS.map(([name, label, autoComplete]) => (
            <addAddress.Field key={name} name={name} validators={{ onChange: ({ value }) => ADDRESS_RULES[name](value) }}>
              {(field) => <TextField field={field} label={label} type="text" autoComplete={autoComplete} />}
            </addAddress.Field>
          ))}
          <button type="submit">Save address</button>
        </form>
      )}
      <h2>Courier</h2>
      <label htmlFor="courier">Courier</label>
      <select id="courier" value={courier ?? couriers.data[0]?.code ?? ""} onChange={(event) => setCourier(event.target.value)}>
        {couriers.data.map((option) => (
          <option key={option.code} value={option.code}>
            {option.name}
          </option>
        ))}
      </select>
      <h2>Your order</h2>
      <p>
        {cart.data.items.reduce((sum, line) => sum + line.quantity, 0)} items,{" "}
        <span className="price">{formatMoney(cart.data.total, cart.data.currency)}</span> before shipping. You pay on the
        next page.
      </p>
      {place.isError ? <p role="alert">{place.error.message}</p> : null}
      <button
        type="button"
        disabled={!selectedAddress || cart.data.items.length === 0 || place.isPending}
        onClick={() => place.mutate()}
      >
        {place.isPending ? "Placing your order…" : "Place order"}
      </button>
    </section>
  );
}
