// The back office's frame: its sections, for staff only (the server checks every call
// again; this only keeps customers out of pages that would refuse them).
import { Link, Outlet, createLazyRoute } from "@tanstack/react-router";
import { useSession } from "../session-context";

export const Route = createLazyRoute("/admin")({ component: AdminLayout });

export function AdminLayout() {
  const session = useSession();
  if (!session.signedIn) {
    return (
      <p>
        <Link to="/login">Sign in</Link> with a staff account.
      </p>
    );
  }
  if (session.role === undefined) return <p role="status">Loading…</p>;
  if (session.role === "customer") return <p role="alert">This part of the shop is for staff.</p>;
  return (
    <section className="admin">
      <nav aria-label="Back office">
        <Link to="/admin/orders">Orders</Link>
        <Link to="/admin/products">Products and stock</Link>
        <Link to="/admin/payments">Payments</Link>
        <Link to="/admin/promo-codes">Promo codes</Link>
        <Link to="/admin/search">Searches</Link>
        <Link to="/admin/tasks">Task queues</Link>
        <Link to="/admin/support">Support inbox</Link>
      </nav>
      <Outlet />
    </section>
  );
}
