// Promo codes: what exists and how often each was used, and a new one (percent off, or a
// fixed amount off in a currency), checked here as the cart service checks it.
import { useForm } from "@tanstack/react-form";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";
import { formatMoney } from "../format";

export const Route = createLazyRoute("/admin/promo-codes")({ component: AdminPromoCodes });

type Field = "code" | "value" | "currency" | "minSubtotal" | "maxUses";

export function AdminPromoCodes() {
  const api = useApi();
  const queryClient = useQueryClient();
  const [kind, setKind] = useState<"percent" | "fixed">("percent");
  const [serverError, setServerError] = useState<{ field?: string; message: string } | null>(null);
  const codes = useQuery({
    queryKey: ["promo-codes"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/admin/promo-codes");
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  const form = useForm({
    defaultValues: { code: "", value: "", currency: "USD", minSubtotal: "0", maxUses: "" },
    onSubmit: async ({ value, formApi }) => {
      setServerError(null);
      const { error } = await api.POST("/v1/admin/promo-codes", {
        body: {
          code: value.code.trim().toUpperCase(),
          kind,
          value: value.value.trim(),
          currency: kind === "fixed" ? value.currency.trim().toUpperCase() : null,
          minSubtotal: value.minSubtotal.trim() || "0",
          maxUses: value.maxUses.trim() ? Number(value.maxUses) : null,
        },
      });
      if (error) {
        setServerError({ field: error.error.field ?? undefined, message: error.error.message });
        return;
      }
      formApi.reset();
      await queryClient.invalidateQueries({ queryKey: ["promo-codes"] });
    },
  });
  const rules: Record<Field, (value: string) => string | undefined> = {
    code: (v) => (/^[A-Za-z0-9_-]{1,32}$/.test(v.trim()) ? undefined : "1 to 32 letters, digits, - or _."),
    value: (v) =>
      !/^\d+(\.\d{1,2})?$/.test(v.trim()) || Number(v) <= 0
        ? "A positive amount such as 10 or 5.50."
        : kind === "percent" && Number(v) > 100
          ? "At most 100 percent."
          : undefined,
    currency: (v) => (kind === "percent" || /^[A-Za-z]{3}$/.test(v.trim()) ? undefined : "Three letters, e.g. USD."),
    minSubtotal: (v) => (v.trim() === "" || /^\d+(\.\d{1,2})?$/.test(v.trim()) ? undefined : "An amount such as 20."),
    maxUses: (v) => (v.trim() === "" || /^[1-9]\d*$/.test(v.trim()) ? undefined : "Blank, or 1 or more."),
  };
  const labels: [Field, string][] = [
    ["code", "Code"],
    ["value", kind === "percent" ? "Percent off" : "Amount off"],
    ...(kind === "fixed" ? ([["currency", "Currency"]] as [Field, string][]) : []),
    ["minSubtotal", "Minimum subtotal"],
    ["maxUses", "Uses allowed (blank: no limit)"],
  ];
  return (
    <section>
      <h1>Promo codes</h1>
      {codes.isPending ? <p role="status">Loading…</p> : null}
      {codes.isError ? <p role="alert">{codes.error.message}</p> : null}
      {codes.data?.length === 0 ? <p>No promo codes yet.</p> : null}
      {codes.data && codes.data.length > 0 ? (
        <table>
          <thead>
            <tr>
              <th scope="col">Code</th>
              <th scope="col">Discount</th>
              <th scope="col">Used</th>
              <th scope="col">Ends</th>
            </tr>
          </thead>
          <tbody>
            {codes.data.map((promo) => (
              <tr key={promo.code}>
                <td>{promo.code}</td>
                <td>{promo.kind === "percent" ? `${promo.value}%` : formatMoney(promo.value, promo.currency ?? "USD")}</td>
                <td>
                  {promo.uses}
                  {promo.maxUses ? ` of ${promo.maxUses}` : ""}
                </td>
                <td>{promo.endsAt ? new Date(promo.endsAt).toLocaleDateString() : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <h2>New promo code</h2>
      <form
        noValidate
        aria-label="New promo code"
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        <fieldset>
          <legend>Kind</legend>
          <label className="choice">
            <input type="radio" name="kind" checked={kind === "percent"} onChange={() => setKind("percent")} /> Percentage
          </label>
          <label className="choice">
            <input type="radio" name="kind" checked={kind === "fixed"} onChange={() => setKind("fixed")} /> Fixed amount
          </label>
        </fieldset>
        {labels.map(([name, label]) => (
          <form.Field key={name} name={name} validators={{ onChange: ({ value }) => rules[name](value) }}>
            {(field) => (
              <TextField
                field={field}
                label={label}
                type="text"
                autoComplete="off"
                serverMessage={serverError?.field === name ? serverError.message : null}
              />
            )}
          </form.Field>
        ))}
        {serverError && !labels.some(([name]) => name === serverError.field) ? <p role="alert">{serverError.message}</p> : null}
        <form.Subscribe selector={(state) => state.isSubmitting}>
          {(isSubmitting) => (
            <button type="submit" disabled={isSubmitting}>
              {isSubmitting ? "Creating…" : "Create promo code"}
            </button>
          )}
        </form.Subscribe>
      </form>
    </section>
  );
}
