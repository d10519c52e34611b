// Typed routes; each page is its own chunk, loaded when first visited.
import { QueryClient, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  Link,
  Outlet,
  createRootRouteWithContext,
  createRoute,
  createRouter,
  redirect,
  type RouterHistory,
} from "@tanstack/react-router";
import { useApi } from "./api/context";
import { NotificationBell } from "./components/NotificationBell";
import { useSession, useSessionStore } from "./session-context";

export interface RouterContext {
  queryClient: QueryClient;
}

export const SORTS = ["relevance", "best_selling", "price_asc", "price_desc", "newest"] as const;
export type Sort = (typeof SORTS)[number];

export interface CatalogueSearch {
  q?: string;
  category?: string;
  sort?: Sort;
  page?: number;
  minPrice?: string;
  maxPrice?: string;
  inStock?: boolean;
}

/** Search parameters from the URL, checked: anything unknown is dropped. */
export function parseCatalogueSearch(raw: Record<string, unknown>): CatalogueSearch {
  const text = (value: unknown) =>
    typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
  const page = Number(raw.page);
  const sort = SORTS.find((candidate) => candidate === raw.sort);
  // Prices are decimals the search service parses; the router may hand numbers.
  const price = (value: unknown) => {
    const candidate = typeof value === "number" ? String(value) : value;
    return typeof candidate === "string" && /^\d{1,9}(\.\d{1,2})?$/.test(candidate.trim()) ? candidate.trim() : undefined;
  };
  return {
    q: text(raw.q),
    category: text(raw.category),
    sort,
    page: Number.isInteger(page) && page > 1 ? page : undefined,
    ...(price(raw.minPrice) ? { minPrice: price(raw.minPrice) } : {}),
    ...(price(raw.maxPrice) ? { maxPrice: price(raw.maxPrice) } : {}),
    ...(raw.inStock === true || raw.inStock === "true" ? { inStock: true } : {}),
  };
}

function Header() {
  const api = useApi();
  const session = useSession();
  const store = useSessionStore();
  const queryClient = useQueryClient();
  const cart = useQuery({
    queryKey: ["cart"],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/cart");
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const count = cart.data?.items.reduce((sum, line) => sum + line.quantity, 0) ?? 0;
  const signOut = async () => {
    await api.POST("/v1/auth/logout");
    store.signOut();
    await queryClient.invalidateQueries();
  };
  return (
    <header>
      <Link to="/" search={{}} className="brand">
        Commerce
      </Link>
      <nav aria-label="Account">
        <Link to="/cart">Cart ({count})</Link>
        {session.signedIn ? (
          <>
            <Link to="/orders">Orders</Link>
            <Link to="/account">Account</Link>
            {session.role === "customer" ? <Link to="/support">Support</Link> : null}
            {session.role === "admin" || session.role === "support" ? <Link to="/admin">Back office</Link> : null}
            <NotificationBell />
            <button type="button" onClick={() => void signOut()}>
              Sign out
            </button>
          </>
        ) : (
          <>
            <Link to="/login">Sign in</Link>
            <Link to="/register">Create account</Link>
          </>
        )}
      </nav>
    </header>
  );
}

const rootRoute = createRootRouteWithContext<RouterContext>()({
  component: () => (
    <div className="shop">
      <Header />
      <main>
        <Outlet />
      </main>
    </div>
  ),
});

const catalogueRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/",
  validateSearch: parseCatalogueSearch,
}).lazy(() => import("./routes/catalogue").then((module) => module.Route));

const productRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/products/$productId",
}).lazy(() => import("./routes/product").then((module) => module.Route));

const cartRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/cart",
}).lazy(() => import("./routes/cart").then((module) => module.Route));

const loginRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/login",
}).lazy(() => import("./routes/login").then((module) => module.Route));

const registerRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/register",
}).lazy(() => import("./routes/register").then((module) => module.Route));

const verifyEmailRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/verify-email",
  validateSearch: (raw: Record<string, unknown>): { token?: string } => ({
    token: typeof raw.token === "string" && raw.token ? raw.token : undefined,
  }),
}).lazy(() => import("./routes/verify-email").then((module) => module.Route));

const forgotPasswordRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/forgot-password",
}).lazy(() => import("./routes/password").then((module) => module.ForgotRoute));

const resetPasswordRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/reset-password",
  validateSearch: (raw: Record<string, unknown>): { token?: string } => ({
    token: typeof raw.token === "string" && raw.token ? raw.token : undefined,
  }),
}).lazy(() => import("./routes/password").then((module) => module.ResetRoute));

const checkoutRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/checkout",
}).lazy(() => import("./routes/checkout").then((module) => module.Route));

const orderRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/orders/$orderId",
}).lazy(() => import("./routes/order").then((module) => module.Route));

const ordersRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/orders",
}).lazy(() => import("./routes/orders").then((module) => module.Route));

const accountRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/account",
}).lazy(() => import("./routes/account").then((module) => module.Route));

const supportRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/support",
}).lazy(() => import("./routes/support").then((module) => module.Route));

const adminRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: "/admin",
}).lazy(() => import("./routes/admin").then((module) => module.Route));

const adminIndexRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/",
  beforeLoad: () => {
    throw redirect({ to: "/admin/orders" });
  },
});

const adminOrdersRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/orders",
}).lazy(() => import("./routes/admin-orders").then((module) => module.Route));

const adminProductsRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/products",
}).lazy(() => import("./routes/admin-products").then((module) => module.Route));

const adminPaymentsRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/payments",
}).lazy(() => import("./routes/admin-payments").then((module) => module.Route));

const adminPromoCodesRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/promo-codes",
}).lazy(() => import("./routes/admin-promo-codes").then((module) => module.Route));

const adminSearchRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/search",
}).lazy(() => import("./routes/admin-search").then((module) => module.Route));

const adminTasksRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/tasks",
}).lazy(() => import("./routes/admin-tasks").then((module) => module.Route));

const adminSupportRoute = createRoute({
  getParentRoute: () => adminRoute,
  path: "/support",
}).lazy(() => import("./routes/admin-support").then((module) => module.Route));

const routeTree = rootRoute.addChildren([
  ordersRoute,
  accountRoute,
  supportRoute,
  adminRoute.addChildren([
    adminIndexRoute,
    adminOrdersRoute,
    adminProductsRoute,
    adminPaymentsRoute,
    adminPromoCodesRoute,
    adminSearchRoute,
    adminTasksRoute,
    adminSupportRoute,
  ]),
  checkoutRoute,
  orderRoute,
  catalogueRoute,
  productRoute,
  cartRoute,
  loginRoute,
  registerRoute,
  verifyEmailRoute,
  forgotPasswordRoute,
  resetPasswordRoute,
]);

export function createAppRouter(queryClient: QueryClient, history?: RouterHistory) {
  return createRouter({
    routeTree,
    context: { queryClient },
    defaultPreload: "intent",
    ...(history ? { history } : {}),
  });
}

declare module "@tanstack/react-router" {
  interface Register {
    router: ReturnType<typeof createAppRouter>;
  }
}
