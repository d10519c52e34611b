// Typed routes; each page is its own chunk, loaded when first visited.
import { QueryClient } from "@tanstack/react-query";
import {
  Link,
  Outlet,
  createRootRouteWithContext,
  createRoute,
  createRouter,
  type RouterHistory,
} from "@tanstack/react-router";

export interface RouterContext {
  queryClient: QueryClient;
}

export const SORTS = ["relevance", "price_asc", "price_desc", "newest"] as const;
export type Sort = (typeof SORTS)[number];

export interface CatalogueSearch {
  q?: string;
  category?: string;
  sort?: Sort;
  page?: number;
}

/** Search parameters from the URL, checked: anything unknown is dropped. */
export function parseCatalogueSearch(raw: Record<string, unknown>): CatalogueSearch {
  const text = (value: unknown) =>
    typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
  const page = Number(raw.page);
  const sort = SORTS.find((candidate) => candidate === raw.sort);
  return {
    q: text(raw.q),
    category: text(raw.category),
    sort,
    page: Number.isInteger(page) && page > 1 ? page : undefined,
  };
}

const rootRoute = createRootRouteWithContext<RouterContext>()({
  component: () => (
    <div className="shop">
      <header>
        <Link to="/" search={{}}>
          Commerce
        </Link>
      </header>
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

const routeTree = rootRoute.addChildren([catalogueRoute, productRoute]);

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
