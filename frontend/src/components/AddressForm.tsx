// A new address for the book: the same checks the server makes, and the server's own
// refusal shown on the field it names.
import { useForm } from "@tanstack/react-form";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import type { Address } from "../api/client";
import { useApi } from "../api/context";
import { TextField } from "./TextField";

type AddressField = "recipient" | "line1" | "city" | "postalCode" | "country";
const ADDRESS_FIELDS: [AddressField, string, string][] = [
  ["recipient", "Recipient", "name"],
  ["line1", "Street and number", "address-line1"],
  ["city", "City", "address-level2"],
  ["postalCode", "Postal code", "postal-code"],
  ["country", "Country (two letters)", "country"],
];
const LIMITS: Record<AddressField, number> = { recipient: 200, line1: 200, city: 100, postalCode: 20, country: 2 };
export const ADDRESS_RULES: Record<AddressField, (value: string) => string | undefined> = {
  recipient: (value) => (value.trim() ? undefined : "Who receives it?"),
  line1: (value) => (value.trim() ? undefined : "Enter the street."),
  city: (value) => (value.trim() ? undefined : "Enter the city."),
  postalCode: (value) => (value.trim() ? undefined : "Enter the postal code."),
  country: (value) => (/^[A-Za-z]{2}$/.test(value.trim()) ? undefined : "Two letters, e.g. US."),
};

function check(name: AddressField, value: string) {
  if (value.trim().length > LIMITS[name]) return `At most ${LIMITS[name]} characters.`;
  return ADDRESS_RULES[name](value);
}

export function AddressForm({ makeDefault, onSaved }: { makeDefault: boolean; onSaved: (address: Address) => void }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const [serverError, setServerError] = useState<{ field?: string; message: string } | null>(null);
  const form = useForm({
    defaultValues: { recipient: "", line1: "", city: "", postalCode: "", country: "" },
    onSubmit: async ({ value, formApi }) => {
      setServerError(null);
      const { data, error } = await api.POST("/v1/users/me/addresses", {
        body: { ...value, country: value.country.trim().toUpperCase(), isDefault: makeDefault },
      });
      if (error) {
        setServerError({ field: error.error.field ?? undefined, message: error.error.message });
        return;
      }
      await queryClient.invalidateQueries({ queryKey: ["addresses"] });
      formApi.reset();
      onSaved(data);
    },
  });
  const fieldNames = ADDRESS_FIELDS.map(([name]) => name as string);
  return (
    <form
      noValidate
      aria-label="New address"
      onSubmit={(event) => {
        event.preventDefault();
        void form.handleSubmit();
      }}
    >
      {ADDRESS_FIELDS.map(([name, label, autoComplete]) => (
        <form.Field key={name} name={name} validators={{ onChange: ({ value }) => check(name, value) }}>
          {(field) => (
            <TextField
              field={field}
              label={label}
              type="text"
              autoComplete={autoComplete}
              serverMessage={serverError?.field === name ? serverError.message : null}
            />
          )}
        </form.Field>
      ))}
      {serverError && !fieldNames.includes(serverError.field ?? "") ? <p role="alert">{serverError.message}</p> : null}
      <form.Subscribe selector={(state) => state.isSubmitting}>
        {(isSubmitting) => (
          <button type="submit" disabled={isSubmitting}>
            {isSubmitting ? "Saving…" : "Save address"}
          </button>
        )}
      </form.Subscribe>
    </form>
  );
}
