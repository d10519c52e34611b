// One labelled input of a TanStack Form: its own check's message once touched, else the
// server's message for it; either is announced and tied to the input.
import type { AnyFieldApi } from "@tanstack/react-form";

export function TextField({
  field,
  label,
  type,
  autoComplete,
  serverMessage,
}: {
  field: AnyFieldApi;
  label: string;
  type: string;
  autoComplete: string;
  serverMessage?: string | null;
}) {
  const name = field.name;
  const local = field.state.meta.isTouched ? field.state.meta.errors[0] : undefined;
  const message = local ? String(local) : (serverMessage ?? null);
  return (
    <p>
      <label htmlFor={name}>{label}</label>
      <input
        id={name}
        type={type}
        autoComplete={autoComplete}
        value={field.state.value as string}
        aria-invalid={message ? true : undefined}
        aria-describedby={message ? `${name}-error` : undefined}
        onBlur={field.handleBlur}
        onChange={(event) => field.handleChange(event.target.value)}
      />
      {message ? (
        <span id={`${name}-error`} role="alert">
          {message}
        </span>
      ) : null}
    </p>
  );
}
