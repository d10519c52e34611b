// Where the verification e-mail's link lands (services.notification.verify_email_url
// pointing here): the token goes to the auth service once, the page says what happened.
import { useQuery } from "@tanstack/react-query";
import { Link, createLazyRoute, useSearch } from "@tanstack/react-router";
import { useApi } from "../api/context";

export const Route = createLazyRoute("/verify-email")({ component: VerifyEmail });

export function VerifyEmail() {
  const { token } = useSearch({ from: "/verify-email" }) as { token?: string };
  const api = useApi();
  const verified = useQuery({
    queryKey: ["verify-email", token],
    enabled: Boolean(token),
    retry: false,
    staleTime: Infinity,
    queryFn: async () => {
      // JSON in, JSON out (the same endpoint answers a browser's form post with a page).
      const { data, error, response } = await api.POST("/v1/auth/verify-email", {
        body: { token: token ?? "" },
        headers: { Accept: "application/json" },
      });
      if (data && typeof data === "object") return data;
      if (response.status === 410) throw new Error("This link has expired; sign in to get a new one.");
      const message = error && typeof error === "object" ? error.error.message : undefined;
      throw new Error(message ?? `Verification failed (${response.status}).`);
    },
  });
  if (!token) return <p role="alert">This link has no token; open the one in the e-mail.</p>;
  if (verified.isPending) return <p role="status">Confirming your e-mail address…</p>;
  if (verified.isError) return <p role="alert">{verified.error.message}</p>;
  return (
    <section>
      <h1>E-mail confirmed</h1>
      <p role="status">
        Thank you, {verified.data.firstName}. <Link to="/login">Sign in</Link>
      </p>
    </section>
  );
}
