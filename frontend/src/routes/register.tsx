// Create an account. The form checks the rules the auth service enforces (an e-mail
// address; a password of 12 to 128 characters with a letter and a digit; both names), and
// the service's refusal lands on the field it names.
import { useForm } from "@tanstack/react-form";
import { Link, createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";

export const Route = createLazyRoute("/register")({ component: Register });

type Field = "email" | "password" | "firstName" | "lastName";

export function passwordProblem(password: string): string | undefined {
  if (password.length < 12) return "At least 12 characters.";
  if (password.length > 128) return "At most 128 characters.";
  if (!/[A-Za-z]/.test(password) || !/[0-9]/.test(password)) return "Use a letter and a digit.";
  return undefined;
}

const RULES: Record<Field, (value: string) => string | undefined> = {
  email: (value) => (/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(value.trim()) ? undefined : "Enter an e-mail address."),
  password: passwordProblem,
  firstName: (value) => (value.trim() ? undefined : "Enter your first name."),
  lastName: (value) => (value.trim() ? undefined : "Enter your last name."),
};

const LABELS: Record<Field, [string, string, string]> = {
  email: ["E-mail", "email", "email"],
  password: ["Password", "password", "new-password"],
  firstName: ["First name", "text", "given-name"],
  lastName: ["Last name", "text", "family-name"],
};

export function Register() {
  const api = useApi();
  const [registered, setRegistered] = useState<string | null>(null);
  const [serverError, setServerError] = useState<{ field: Field | null; message: string } | null>(null);
  const form = useForm({
    defaultValues: { email: "", password: "", firstName: "", lastName: "" },
    onSubmit: async ({ value }) => {
      setServerError(null);
      const { data, error, response } = await api.POST("/v1/auth/register", {
        body: { ...value, email: value.email.trim() },
      });
      if (data) {
        setRegistered(data.email);
        return;
      }
      const field = (error?.error.field ?? null) as Field | null;
      setServerError({
        field: field && field in RULES ? field : null,
        message: error?.error.message ?? `Sign-up failed (${response.status}).`,
      });
    },
  });

  if (registered) {
    return (
      <section>
        <h1>Check your e-mail</h1>
        <p role="status">
          We sent a link to {registered}. Open it to confirm the address, then <Link to="/login">sign in</Link>.
        </p>
      </section>
    );
  }
  return (
    <section>
      <h1>Create an account</h1>
      {serverError && !serverError.field ? <p role="alert">{serverError.message}</p> : null}
      <form
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        {(Object.keys(RULES) as Field[]).map((name) => (
          <form.Field key={name} name={name} validators={{ onChange: ({ value }) => RULES[name](value) }}>
            {(field) => {
              const [label, type, autoComplete] = LABELS[name];
              return (
                <TextField
                  field={field}
                  label={label}
                  type={type}
                  autoComplete={autoComplete}
                  serverMessage={serverError?.field === name ? serverError.message : null}
                />
              );
            }}
          </form.Field>
        ))}
        <form.Subscribe selector={(state) => [state.canSubmit, state.isSubmitting] as const}>
          {([canSubmit, isSubmitting]) => (
            <button type="submit" disabled={!canSubmit || isSubmitting}>
              {isSubmitting ? "Creating…" : "Create account"}
            </button>
          )}
        </form.Subscribe>
      </form>
    </section>
  );
}
