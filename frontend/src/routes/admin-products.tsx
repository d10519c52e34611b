// The catalogue as staff see it (inactive products too) with stock on hand and held, a
// stock adjustment per product (a signed count and why), and a new product.
import { useForm } from "@tanstack/react-form";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import type { Product } from "../api/client";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";
import { formatMoney } from "../format";

export const Route = createLazyRoute("/admin/products")({ component: AdminProducts });

const PAGE_SIZE = 25;

export function AdminProducts() {
  const api = useApi();
  const [page, setPage] = useState(1);
  const products = useQuery({
    queryKey: ["admin-products", page],
    placeholderData: keepPreviousData,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/products", {
        params: { query: { page, pageSize: PAGE_SIZE, includeInactive: true, sort: "name" } },
      });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  if (products.isPending) return <p role="status">Loading products…</p>;
  if (products.isError) return <p role="alert">Products could not be loaded: {products.error.message}</p>;
  const pages = Math.max(1, Math.ceil(products.data.total / PAGE_SIZE));
  return (
    <section aria-busy={products.isFetching}>
      <h1>Products and stock</h1>
      <table>
        <thead>
          <tr>
            <th scope="col">SKU</th>
            <th scope="col">Name</th>
            <th scope="col">Price</th>
            <th scope="col">On hand</th>
            <th scope="col">Held</th>
            <th scope="col">Adjust stock</th>
          </tr>
        </thead>
        <tbody>
          {products.data.items.map((product) => (
            <tr key={product.id} className={product.active ? undefined : "inactive"}>
              <td>{product.sku}</td>
              <td>
                {product.name}
                {product.active ? null : <em> (inactive)</em>}
              </td>
              <td className="price">{formatMoney(product.price.amount, product.price.currency)}</td>
              <td data-testid={`stock-${product.sku}`}>{product.stock}</td>
              <td>{product.reserved}</td>
              <td>
                <StockAdjustment product={product} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav aria-label="Pages">
        <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>
          Previous
        </button>
        <span>
          Page {page} of {pages}
        </span>
        <button type="button" disabled={page >= pages} onClick={() => setPage(page + 1)}>
          Next
        </button>
      </nav>
      <NewProduct />
    </section>
  );
}

function StockAdjustment({ product }: { product: Product }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const [delta, setDelta] = useState("");
  const [reason, setReason] = useState("");
  const adjust = useMutation({
    mutationFn: async () => {
      const { data, error } = await api.POST("/v1/products/{id}/stock-adjustments", {
        params: { path: { id: product.id } },
        body: { delta: Number(delta), reason: reason.trim() },
      });
      if (error) throw new Error(error.error.message);
      return data;
    },
    onSuccess: () => {
      setDelta("");
      setReason("");
      void queryClient.invalidateQueries({ queryKey: ["admin-products"] });
    },
  });
  const count = Number(delta);
  const invalid =
    delta === "" || !Number.isInteger(count) || count === 0
      ? "A whole number, not zero."
      : product.stock + count < 0
        ? `Only ${product.stock} on hand.`
        : !reason.trim()
          ? "Say why."
          : null;
  return (
    <form
      className="inline"
      aria-label={`Adjust the stock of ${product.name}`}
      onSubmit={(event) => {
        event.preventDefault();
        if (!invalid) adjust.mutate();
      }}
    >
      <input
        aria-label={`Units to add or remove (${product.sku})`}
        type="number"
        value={delta}
        onChange={(event) => setDelta(event.target.value)}
        size={5}
      />
      <input aria-label={`Reason (${product.sku})`} value={reason} maxLength={500} onChange={(event) => setReason(event.target.value)} />
      <button type="submit" disabled={Boolean(invalid) || adjust.isPending} title={invalid ?? undefined}>
        Apply
      </button>
      {adjust.isError ? <span role="alert">{adjust.error.message}</span> : null}
    </form>
  );
}

function NewProduct() {
  const api = useApi();
  const queryClient = useQueryClient();
  const [serverError, setServerError] = useState<{ field?: string; message: string } | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const form = useForm({
    defaultValues: { sku: "", name: "", category: "", amount: "", currency: "USD", stock: "0" },
    onSubmit: async ({ value, formApi }) => {
      setServerError(null);
      const { data, error } = await api.POST("/v1/products", {
        body: {
          sku: value.sku.trim(),
          name: value.name.trim(),
          description: "",
          category: value.category.trim(),
          active: true,
          price: { amount: value.amount.trim(), currency: value.currency.trim().toUpperCase() },
          stock: Number(value.stock),
        },
      });
      if (error) {
        setServerError({ field: error.error.field ?? undefined, message: error.error.message });
        return;
      }
      setCreated(data.name);
      formApi.reset();
      await queryClient.invalidateQueries({ queryKey: ["admin-products"] });
    },
  });
  type Field = "sku" | "name" | "category" | "amount" | "currency" | "stock";
  const rules: Record<Field, (value: string) => string | undefined> = {
    sku: (v) => (v.trim() ? undefined : "Enter a SKU."),
    name: (v) => (v.trim() ? undefined : "Enter a name."),
    category: (v) => (v.trim() ? undefined : "Enter a category."),
    amount: (v) => (/^\d+(\.\d{1,2})?$/.test(v.trim()) ? undefined : "A price such as 12.50."),
    currency: (v) => (/^[A-Za-z]{3}$/.test(v.trim()) ? undefined : "Three letters, e.g. USD."),
    stock: (v) => (/^\d+$/.test(v.trim()) ? undefined : "Units on hand, 0 or more."),
  };
  const serverField = (name: string) =>
    serverError && (serverError.field === name || serverError.field === `price.${name}`) ? serverError.message : null;
  return (
    <details>
      <summary>New product</summary>
      <form
        noValidate
        aria-label="New product"
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        {(
          [
            ["sku", "SKU"],
            ["name", "Name"],
            ["category", "Category"],
            ["amount", "Price"],
            ["currency", "Currency"],
            ["stock", "Units on hand"],
          ] as const
        ).map(([name, label]) => (
          <form.Field key={name} name={name} validators={{ onChange: ({ value }) => rules[name](value) }}>
            {(field) => <TextField field={field} label={label} type="text" autoComplete="off" serverMessage={serverField(name)} />}
          </form.Field>
        ))}
        {serverError && !serverField(serverError.field ?? "") ? <p role="alert">{serverError.message}</p> : null}
        {created ? <p role="status">Created {created}.</p> : null}
        <button type="submit">Create product</button>
      </form>
    </details>
  );
}
