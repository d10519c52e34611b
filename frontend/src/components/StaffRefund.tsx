// An admin's refund of a paid order: part of it (an amount) or everything left (blank),
// with a reason the customer and the order's history see. One idempotency key per
// submission, kept while it is retried, so a double click refunds once.
import { useForm } from "@tanstack/react-form";
import { useState } from "react";
import { useApi } from "../api/context";
import { formatMoney } from "../format";
import { TextField } from "./TextField";

type Field = "amount" | "reason";

const RULES: Record<Field, (value: string) => string | undefined> = {
  amount: (v) =>
    v.trim() === "" || (/^\d+(\.\d{1,2})?$/.test(v.trim()) && Number(v) > 0)
      ? undefined
      : "Blank for everything left, or an amount such as 5.50.",
  reason: (v) => (v.trim() === "" ? "Say why, for the customer and the order's history." : undefined),
};

export function StaffRefund({
  orderId,
  currency,
  onRefunded,
}: {
  orderId: string;
  currency: string;
  onRefunded: () => void;
}) {
  const api = useApi();
  const [key, setKey] = useState(() => crypto.randomUUID());
  const [serverError, setServerError] = useState<{ field?: string; message: string } | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const form = useForm({
    defaultValues: { amount: "", reason: "" },
    onSubmit: async ({ value, formApi }) => {
      setServerError(null);
      setDone(null);
      const { data, error } = await api.POST("/v1/admin/orders/{id}/refunds", {
        params: { path: { id: orderId }, header: { "Idempotency-Key": key } },
        body: { amount: value.amount.trim() || null, reason: value.reason.trim() },
      });
      if (error) {
        setServerError({ field: error.error.field ?? undefined, message: error.error.message });
        return;
      }
      setDone(`Refunded ${formatMoney(data.amount, data.currency)}.`);
      setKey(crypto.randomUUID());
      formApi.reset();
      onRefunded();
    },
  });
  const labels: [Field, string][] = [
    ["amount", `Refund amount (${currency}; blank: everything left)`],
    ["reason", "Refund reason"],
  ];
  return (
    <form
      noValidate
      aria-label="Refund"
      onSubmit={(event) => {
        event.preventDefault();
        void form.handleSubmit();
      }}
    >
      <h2>Refund</h2>
      {labels.map(([name, label]) => (
        <form.Field key={name} name={name} validators={{ onChange: ({ value }) => RULES[name](value) }}>
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
      {done ? (
        <p role="status" data-testid="refund-done">
          {done}
        </p>
      ) : null}
      <form.Subscribe selector={(state) => state.isSubmitting}>
        {(isSubmitting) => (
          <button type="submit" disabled={isSubmitting}>
            {isSubmitting ? "Refunding…" : "Refund"}
          </button>
        )}
      </form.Subscribe>
    </form>
  );
}
