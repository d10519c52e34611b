// Forgotten and changed passwords. "Forgot" asks auth to e-mail a single-use link (the
// answer is the same whether or not the address has an account); the link lands on
// "reset" (services.notification.reset_password_url points here), which sets the new
// password; auth then ends every session, so the shopper signs in again.
import { useForm } from "@tanstack/react-form";
import { Link, createLazyRoute, useSearch } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";
import { passwordProblem } from "./register";

export const ForgotRoute = createLazyRoute("/forgot-password")({ component: ForgotPassword });
export const ResetRoute = createLazyRoute("/reset-password")({ component: ResetPassword });

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export function ForgotPassword() {
  const api = useApi();
  const [sentTo, setSentTo] = useState<string | null>(null);
  const [serverError, setServerError] = useState<string | null>(null);
  const form = useForm({
    defaultValues: { email: "" },
    onSubmit: async ({ value }) => {
      setServerError(null);
      const email = value.email.trim();
      const { error, response } = await api.POST("/v1/auth/password/forgot", { body: { email } });
      if (response.ok) {
        setSentTo(email);
        return;
      }
      setServerError(
        response.status === 429
          ? "Too many requests; try again later."
          : (error?.error.message ?? `The request failed (${response.status}).`),
      );
    },
  });
  if (sentTo) {
    return (
      <section>
        <h1>Check your e-mail</h1>
        <p role="status">
          If {sentTo} has an account, a link to choose a new password is on its way. It works once, for an hour.
        </p>
      </section>
    );
  }
  return (
    <section>
      <h1>Forgot your password?</h1>
      <form
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        <form.Field
          name="email"
          validators={{ onChange: ({ value }) => (EMAIL.test(value.trim()) ? undefined : "Enter an e-mail address.") }}
        >
          {(field) => (
            <TextField field={field} label="E-mail" type="email" autoComplete="username" serverMessage={serverError} />
          )}
        </form.Field>
        <form.Subscribe selector={(state) => [state.canSubmit, state.isSubmitting] as const}>
          {([canSubmit, isSubmitting]) => (
            <button type="submit" disabled={!canSubmit || isSubmitting}>
              {isSubmitting ? "Sending…" : "E-mail me a link"}
            </button>
          )}
        </form.Subscribe>
      </form>
    </section>
  );
}

export function ResetPassword() {
  const { token } = useSearch({ from: "/reset-password" }) as { token?: string };
  const api = useApi();
  const [done, setDone] = useState(false);
  const [serverError, setServerError] = useState<string | null>(null);
  const form = useForm({
    defaultValues: { password: "" },
    onSubmit: async ({ value }) => {
      setServerError(null);
      const { error, response } = await api.POST("/v1/auth/password/reset", {
        body: { token: token ?? "", password: value.password },
      });
      if (response.ok) {
        setDone(true);
        return;
      }
      setServerError(
        response.status === 410
          ? "This link has expired; ask for a new one."
          : (error?.error.message ?? `The reset failed (${response.status}).`),
      );
    },
  });
  if (!token) return <p role="alert">This link has no token; open the one in the e-mail.</p>;
  if (done) {
    return (
      <section>
        <h1>Password changed</h1>
        <p role="status">
          Every session was signed out. <Link to="/login">Sign in</Link> with the new password.
        </p>
      </section>
    );
  }
  return (
    <section>
      <h1>Choose a new password</h1>
      {serverError ? (
        <p role="alert">
          {serverError} <Link to="/forgot-password">Ask for a new link</Link>
        </p>
      ) : null}
      <form
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        <form.Field name="password" validators={{ onChange: ({ value }) => passwordProblem(value) }}>
          {(field) => <TextField field={field} label="New password" type="password" autoComplete="new-password" />}
        </form.Field>
        <form.Subscribe selector={(state) => [state.canSubmit, state.isSubmitting] as const}>
          {([canSubmit, isSubmitting]) => (
            <button type="submit" disabled={!canSubmit || isSubmitting}>
              {isSubmitting ? "Saving…" : "Set the new password"}
            </button>
          )}
        </form.Subscribe>
      </form>
    </section>
  );
}
