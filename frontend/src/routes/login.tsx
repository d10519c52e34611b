// Sign in. The form checks what the server would refuse before asking it; the server's
// own refusal lands on the field it names (or on the password, for wrong credentials).
import { useForm } from "@tanstack/react-form";
import { useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useNavigate } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { TextField } from "../components/TextField";
import { mergeGuestCart, tokenIdentity } from "../session";
import { useSessionStore } from "../session-context";

export const Route = createLazyRoute("/login")({ component: Login });

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export function Login() {
  const api = useApi();
  const session = useSessionStore();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [serverError, setServerError] = useState<{ field: string; message: string } | null>(null);
  const form = useForm({
    defaultValues: { email: "", password: "" },
    onSubmit: async ({ value }) => {
      setServerError(null);
      const { data, error, response } = await api.POST("/v1/auth/login", { body: value });
      if (data) {
        session.signIn(data);
        await mergeGuestCart(api, session);
        // Cart and orders are someone else's now.
        await queryClient.invalidateQueries();
        // Staff go to the back office; customers back to their cart.
        const { role } = tokenIdentity(data.accessToken);
        await navigate({ to: role === "admin" || role === "support" ? "/admin/orders" : "/cart" });
        return;
      }
      const field = error?.error.field === "email" ? "email" : "password";
      setServerError({
        field,
        message:
          response.status === 401 ? "The e-mail or the password is wrong." : (error?.error.message ?? `Sign-in failed (${response.status}).`),
      });
    },
  });

  return (
    <section>
      <h1>Sign in</h1>
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
            <TextField
              field={field}
              label="E-mail"
              type="email"
              autoComplete="username"
              serverMessage={serverError?.field === "email" ? serverError.message : null}
            />
          )}
        </form.Field>
        <form.Field
          name="password"
          validators={{ onChange: ({ value }) => (value.length > 0 ? undefined : "Enter your password.") }}
        >
          {(field) => (
            <TextField
              field={field}
              label="Password"
              type="password"
              autoComplete="current-password"
              serverMessage={serverError?.field === "password" ? serverError.message : null}
            />
          )}
        </form.Field>
        <form.Subscribe selector={(state) => [state.canSubmit, state.isSubmitting] as const}>
          {([canSubmit, isSubmitting]) => (
            <button type="submit" disabled={!canSubmit || isSubmitting}>
              {isSubmitting ? "Signing in…" : "Sign in"}
            </button>
          )}
        </form.Subscribe>
      </form>
      <p>
        <Link to="/forgot-password">Forgot your password?</Link>
      </p>
    </section>
  );
}
