// The cart: lines with quantities, totals priced by the cart service.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import type { Cart } from "../api/client";
import { useApi } from "../api/context";
import { formatMoney } from "../format";

export const Route = createLazyRoute("/cart")({ component: CartPage });

export function useCart() {
  const api = useApi();
  return useQuery({
    queryKey: ["cart"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/cart");
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
}

export function CartPage() {
  const api = useApi();
  const queryClient = useQueryClient();
  const cart = useCart();
  const setQuantity = useMutation({
    mutationFn: async ({ productId, quantity }: { productId: string; quantity: number }) => {
      const { data, error } =
        quantity === 0
          ? await api.DELETE("/v1/cart/items/{productId}", { params: { path: { productId } } })
          : await api.PUT("/v1/cart/items/{productId}", { params: { path: { productId } }, body: { quantity } });
      if (error) throw new Error(error.error.message);
      return data;
    },
    // The line shows its new quantity at once; the server's priced cart replaces it, and
    // a refusal puts the old cart back.
    onMutate: async ({ productId, quantity }) => {
      await queryClient.cancelQueries({ queryKey: ["cart"] });
      const previous = queryClient.getQueryData<Cart>(["cart"]);
      if (previous) {
        queryClient.setQueryData<Cart>(["cart"], {
          ...previous,
          items: previous.items
            .map((line) => (line.productId === productId ? { ...line, quantity } : line))
            .filter((line) => line.quantity > 0),
        });
      }
      return { previous };
    },
    onError: (_error, _change, context) => {
      if (context?.previous) queryClient.setQueryData(["cart"], context.previous);
    },
    onSuccess: (updated) => queryClient.setQueryData(["cart"], updated),
  });

  if (cart.isPending) return <p role="status">Loading your cart…</p>;
  if (cart.isError) return <p role="alert">The cart could not be loaded: {cart.error.message}</p>;
  const { items, subtotal, discount, total, currency, promo } = cart.data;
  if (items.length === 0) {
    return (
      <section>
        <h1>Your cart</h1>
        <p>Your cart is empty. <Link to="/" search={{}}>Browse the catalogue</Link></p>
      </section>
    );
  }
  return (
    <section aria-busy={setQuantity.isPending}>
      <h1>Your cart</h1>
      {setQuantity.isError ? <p role="alert">{setQuantity.error.message}</p> : null}
      <table>
        <thead>
          <tr>
            <th scope="col">Product</th>
            <th scope="col">Quantity</th>
            <th scope="col">Price</th>
          </tr>
        </thead>
        <tbody>
          {items.map((line) => (
            <tr key={line.productId}>
              <td>
                <Link to="/products/$productId" params={{ productId: line.productId }}>
                  {line.name}
                </Link>
              </td>
              <td>
                <label htmlFor={`quantity-${line.productId}`} className="visually-hidden">
                  Quantity of {line.name}
                </label>
                <input
                  id={`quantity-${line.productId}`}
                  type="number"
                  min={0}
                  max={99}
                  value={line.quantity}
                  onChange={(event) => {
                    const quantity = Number(event.target.value);
                    if (Number.isInteger(quantity) && quantity >= 0 && quantity <= 99) {
                      setQuantity.mutate({ productId: line.productId, quantity });
                    }
                  }}
                />
                <button type="button" onClick={() => setQuantity.mutate({ productId: line.productId, quantity: 0 })}>
                  Remove
                </button>
              </td>
              <td className="price">{formatMoney(line.unitPrice, line.currency)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <PromoCode promo={promo} />
      <dl className="totals">
        <dt>Subtotal</dt>
        <dd className="price">{formatMoney(subtotal, currency)}</dd>
        <dt>Discount</dt>
        <dd className="price">{formatMoney(discount, currency)}</dd>
        <dt>Total</dt>
        <dd className="price" data-testid="cart-total">{formatMoney(total, currency)}</dd>
      </dl>
      <p>
        <Link to="/checkout">Check out</Link>
      </p>
    </section>
  );
}

/** The promo code on the cart: the cart service says whether it applies, and why not. */
function PromoCode({ promo }: { promo: Cart["promo"] }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const [code, setCode] = useState("");
  const apply = useMutation({
    mutationFn: async (value: string) => {
      const { data, error } = await api.POST("/v1/cart/promo", { body: { code: value } });
      if (error) throw new Error(error.error.message);
      return data;
    },
    onSuccess: (updated) => {
      queryClient.setQueryData(["cart"], updated);
      setCode("");
    },
  });
  const remove = useMutation({
    mutationFn: async () => {
      const { data, error } = await api.DELETE("/v1/cart/promo");
      if (error) throw new Error(error.error.message);
      return data;
    },
    onSuccess: (updated) => queryClient.setQueryData(["cart"], updated),
  });
  const trimmed = code.trim();
  const localError = trimmed.length > 32 ? "A promo code has at most 32 characters." : null;
  const message = localError ?? (apply.isError ? apply.error.message : null);
  return (
    <div className="promo">
      {promo ? (
        <p data-testid="promo-state">
          Promo code <strong>{promo.code}</strong>: {promo.applies ? "applied" : `does not apply (${promo.reason ?? "not now"})`}{" "}
          <button type="button" disabled={remove.isPending} onClick={() => remove.mutate()}>
            Remove code
          </button>
        </p>
      ) : null}
      <form
        noValidate
        aria-label="Apply a promo code"
        onSubmit={(event) => {
          event.preventDefault();
          if (trimmed && !localError) apply.mutate(trimmed);
        }}
      >
        <label htmlFor="promo-code">Promo code</label>
        <input
          id="promo-code"
          value={code}
          autoComplete="off"
          aria-invalid={message ? true : undefined}
          aria-describedby={message ? "promo-code-error" : undefined}
          onChange={(event) => setCode(event.target.value)}
        />
        <button type="submit" disabled={!trimmed || apply.isPending}>
          {apply.isPending ? "Applying…" : "Apply"}
        </button>
        {message ? (
          <span id="promo-code-error" role="alert">
            {message}
          </span>
        ) : null}
      </form>
    </div>
  );
}
