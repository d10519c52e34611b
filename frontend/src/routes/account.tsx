// The account: who you are, where your orders go (the address book), the password, and
// where you are signed in — each session can be ended, or all of them at once.
import { useForm } from "@tanstack/react-form";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useNavigate } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";
import { AddressForm } from "../components/AddressForm";
import { TextField } from "../components/TextField";
import { useSession, useSessionStore } from "../session-context";
import { passwordProblem } from "./register";

export const Route = createLazyRoute("/account")({ component: AccountPage });

export function AccountPage() {
  const session = useSession();
  if (!session.signedIn) {
    return (
      <p>
        <Link to="/login">Sign in</Link> to see your account.
      </p>
    );
  }
  return (
    <section>
      <h1>Your account</h1>
      <Profile />
      <Addresses />
      <ChangePassword />
      <Sessions />
    </section>
  );
}

// Needs the current password; every other session ends, this one goes on.
function ChangePassword() {
  const api = useApi();
  const queryClient = useQueryClient();
  const [changed, setChanged] = useState(false);
  const [serverError, setServerError] = useState<{ field: string; message: string } | null>(null);
  const form = useForm({
    defaultValues: { currentPassword: "", newPassword: "" },
    onSubmit: async ({ value, formApi }) => {
      setServerError(null);
      setChanged(false);
      const { error, response } = await api.POST("/v1/users/me/password", { body: value });
      if (response.ok) {
        setChanged(true);
        formApi.reset();
        await queryClient.invalidateQueries({ queryKey: ["sessions"] });
        return;
      }
      setServerError({
        field: error?.error.field === "currentPassword" ? "currentPassword" : "newPassword",
        message:
          response.status === 429
            ? "Too many attempts; try again later."
            : (error?.error.message ?? `The change failed (${response.status}).`),
      });
    },
  });
  return (
    <section aria-labelledby="password-heading">
      <h2 id="password-heading">Password</h2>
      {changed ? <p role="status">Your password is changed; your other sessions were signed out.</p> : null}
      <form
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void form.handleSubmit();
        }}
      >
        <form.Field
          name="currentPassword"
          validators={{ onChange: ({ value }) => (value ? undefined : "Enter your current password.") }}
        >
          {(field) => (
            <TextField
              field={field}
              label="Current password"
              type="password"
              autoComplete="current-password"
              serverMessage={serverError?.field === "currentPassword" ? serverError.message : null}
            />
          )}
        </form.Field>
        <form.Field name="newPassword" validators={{ onChange: ({ value }) => passwordProblem(value) }}>
          {(field) => (
            <TextField
              field={field}
              label="New password"
              type="password"
              autoComplete="new-password"
              serverMessage={serverError?.field === "newPassword" ? serverError.message : null}
            />
          )}
        </form.Field>
        <form.Subscribe selector={(state) => [state.canSubmit, state.isSubmitting] as const}>
          {([canSubmit, isSubmitting]) => (
            <button type="submit" disabled={!canSubmit || isSubmitting}>
              {isSubmitting ? "Changing…" : "Change password"}
            </button>
          )}
        </form.Subscribe>
      </form>
    </section>
  );
}

function Profile() {
  const api = useApi();
  const me = useQuery({
    queryKey: ["me"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/users/me");
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  if (me.isPending) return <p role="status">Loading…</p>;
  if (me.isError) return <p role="alert">{me.error.message}</p>;
  return (
    <dl className="profile">
      <dt>Name</dt>
      <dd>
        {me.data.firstName} {me.data.lastName}
      </dd>
      <dt>E-mail</dt>
      <dd data-testid="account-email">{me.data.email}</dd>
      <dt>Account</dt>
      <dd>{me.data.status === "active" ? "Verified" : me.data.status}</dd>
    </dl>
  );
}

function Addresses() {
  const api = useApi();
  const queryClient = useQueryClient();
  const addresses = useQuery({
    queryKey: ["addresses"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/users/me/addresses");
      if (error) throw new Error(error.error.message);
      return data.items;
    },
  });
  const remove = useMutation({
    mutationFn: async (id: string) => {
      const { error } = await api.DELETE("/v1/users/me/addresses/{id}", { params: { path: { id } } });
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["addresses"] }),
  });
  const makeDefault = useMutation({
    mutationFn: async (id: string) => {
      const address = addresses.data?.find((a) => a.id === id);
      if (!address) return;
      const { id: _id, isDefault: _was, ...fields } = address;
      const { error } = await api.PUT("/v1/users/me/addresses/{id}", {
        params: { path: { id } },
        body: { ...fields, isDefault: true },
      });
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["addresses"] }),
  });
  return (
    <section aria-labelledby="addresses-heading">
      <h2 id="addresses-heading">Addresses</h2>
      {addresses.isPending ? <p role="status">Loading…</p> : null}
      {addresses.isError ? <p role="alert">{addresses.error.message}</p> : null}
      {remove.isError ? <p role="alert">{remove.error.message}</p> : null}
      {makeDefault.isError ? <p role="alert">{makeDefault.error.message}</p> : null}
      {addresses.data?.length === 0 ? <p>No addresses yet.</p> : null}
      <ul className="addresses">
        {addresses.data?.map((address) => (
          <li key={address.id}>
            {address.recipient}, {address.line1}, {address.postalCode} {address.city}, {address.country}
            {address.isDefault ? (
              <strong> (default)</strong>
            ) : (
              <button type="button" onClick={() => makeDefault.mutate(address.id)}>
                Make default
              </button>
            )}
            <button type="button" onClick={() => remove.mutate(address.id)} aria-label={`Delete the address of ${address.recipient}`}>
              Delete
            </button>
          </li>
        ))}
      </ul>
      <details>
        <summary>Add an address</summary>
        <AddressForm makeDefault={addresses.data?.length === 0} onSaved={() => undefined} />
      </details>
    </section>
  );
}

function Sessions() {
  const api = useApi();
  const store = useSessionStore();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const sessions = useQuery({
    queryKey: ["sessions"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/auth/sessions");
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const revoke = useMutation({
    mutationFn: async (id: string) => {
      const { error } = await api.DELETE("/v1/auth/sessions/{id}", { params: { path: { id } } });
      if (error) throw new Error(error.error.message);
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["sessions"] }),
  });
  // One call ends every session, this one included; their tokens stop working at once.
  const everywhere = useMutation({
    mutationFn: async () => {
      const { error } = await api.DELETE("/v1/auth/sessions");
      if (error) throw new Error(error.error.message);
      store.signOut();
    },
    onSuccess: async () => {
      queryClient.clear();
      await navigate({ to: "/login" });
    },
  });
  if (sessions.isPending) return <p role="status">Loading your sessions…</p>;
  if (sessions.isError) return <p role="alert">{sessions.error.message}</p>;
  return (
    <section aria-labelledby="sessions-heading">
      <h2 id="sessions-heading">Where you are signed in</h2>
      {revoke.isError ? <p role="alert">{revoke.error.message}</p> : null}
      {everywhere.isError ? <p role="alert">{everywhere.error.message}</p> : null}
      <ul className="sessions">
        {sessions.data.items.map((item) => (
          <li key={item.id} data-testid="session">
            {item.userAgent || "Unknown device"} from {item.ip || "unknown address"}, last used{" "}
            {new Date(item.lastUsedAt).toLocaleString()}
            {item.id === sessions.data.current ? (
              <strong> (this device)</strong>
            ) : (
              <button type="button" disabled={revoke.isPending} onClick={() => revoke.mutate(item.id)}>
                Sign out there
              </button>
            )}
          </li>
        ))}
      </ul>
      <button type="button" disabled={everywhere.isPending} onClick={() => everywhere.mutate()}>
        {everywhere.isPending ? "Signing out…" : "Sign out everywhere"}
      </button>
    </section>
  );
}
