// The catalogue page through the real router, query cache and typed client; only the
// network is a function here (the shop end to end is the Playwright suite's).
import { cleanup, fireEvent, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { parseCatalogueSearch } from "../router";
import { renderShop } from "../test-shop";

afterEach(cleanup);

type Handler = (url: URL) => { status: number; body: unknown };

/** The shop over a fake network; `requests()` lists what was asked beside the cart badge. */
function renderCatalogue(path: string, handler: Handler) {
  const isCart = (url: URL) => url.pathname === "/v1/cart" || url.pathname === "/v1/cart/guest";
  const { calls, router } = renderShop(path, ({ url }) => (isCart(url) ? undefined : handler(url)));
  const requests = () => calls.filter((call) => !isCart(call.url)).map((call) => call.url);
  return { requests, router };
}

const hit = (id: string, name: string, price: string, stock = 5) => ({
  id,
  sku: id.toUpperCase(),
  name,
  description: "",
  category: "kitchen",
  price,
  currency: "USD",
  stock,
  image: null,
  createdAt: 0,
});

describe("catalogue", () => {
  it("shows the hits, their prices and the category facets, and filters by a facet", async () => {
    const { requests, router } = renderCatalogue("/?q=mgu", (url) => ({
      status: 200,
      body: {
        items:
          url.searchParams.get("category") === "office"
            ? [hit("p3", "Desk lamp", "40.00")]
            : [hit("p1", "Blue mug", "12.50"), hit("p2", "Red mug", "9.00", 0)],
        total: url.searchParams.get("category") === "office" ? 1 : 2,
        page: 1,
        pageSize: 24,
        categories: [
          { value: "kitchen", count: 2 },
          { value: "office", count: 1 },
        ],
      },
    }));
    expect(await screen.findByText("Blue mug")).toBeTruthy();
    expect(screen.getByText("$12.50")).toBeTruthy();
    expect(screen.getByText("Sold out")).toBeTruthy();
    expect(screen.getByText("2 products for “mgu”")).toBeTruthy();
    expect(requests()[0]?.pathname).toBe("/v1/search");
    expect(requests()[0]?.searchParams.get("q")).toBe("mgu");

    fireEvent.click(screen.getByRole("button", { name: "office (1)" }));
    expect(await screen.findByText("Desk lamp")).toBeTruthy();
    expect(router.state.location.search).toEqual({ q: "mgu", category: "office" });
    expect(requests().at(-1)?.searchParams.get("category")).toBe("office");
  });

  it("filters by price and stock through the URL, refusing a range upside down", async () => {
    const { requests, router } = renderCatalogue("/", () => ({
      status: 200,
      body: { items: [hit("p1", "Blue mug", "12.50")], total: 1, page: 1, pageSize: 24, categories: [] },
    }));
    await screen.findByText("Blue mug");
    fireEvent.change(screen.getByLabelText("From $"), { target: { value: "20" } });
    fireEvent.change(screen.getByLabelText("to $"), { target: { value: "5" } });
    expect(screen.getByRole("alert").textContent).toBe("The lowest price is above the highest.");
    fireEvent.change(screen.getByLabelText("from $", { exact: false }), { target: { value: "5" } });
    fireEvent.change(screen.getByLabelText("to $"), { target: { value: "20.50" } });
    fireEvent.click(screen.getByRole("button", { name: "Search" }));
    await waitFor(() => expect(router.state.location.search).toEqual({ minPrice: "5", maxPrice: "20.50" }));
    fireEvent.click(screen.getByRole("checkbox", { name: "In stock only" }));
    await waitFor(() => expect(requests().at(-1)?.searchParams.get("inStock")).toBe("true"));
    expect(requests().at(-1)?.searchParams.get("minPrice")).toBe("5");
    expect(requests().at(-1)?.searchParams.get("maxPrice")).toBe("20.50");
  });

  it("says when the catalogue cannot be loaded", async () => {
    renderCatalogue("/", () => ({
      status: 503,
      body: { error: { code: "unavailable", message: "search is down" } },
    }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("search is down");
  });

  it("keeps only search parameters it understands", () => {
    expect(parseCatalogueSearch({ q: "  mug ", sort: "price_asc", page: "3", evil: "x" })).toEqual({
      q: "mug",
      category: undefined,
      sort: "price_asc",
      page: 3,
    });
    expect(parseCatalogueSearch({ minPrice: 5, maxPrice: "1e9", inStock: "true" })).toEqual({ minPrice: "5", inStock: true });
    expect(parseCatalogueSearch({ sort: "cheapest", page: "-1", q: "" })).toEqual({
      q: undefined,
      category: undefined,
      sort: undefined,
      page: undefined,
    });
  });
});

describe("product page", () => {
  it("shows the product and says so when it does not exist", async () => {
    renderCatalogue("/products/p1", (url) =>
      url.pathname.endsWith("/p1")
        ? {
            status: 200,
            body: {
              id: "p1",
              sku: "P1",
              name: "Blue mug",
              description: "Holds coffee.",
              category: "kitchen",
              price: { amount: "12.50", currency: "USD" },
              stock: 5,
              reserved: 2,
              attributes: {},
              images: [],
              active: true,
              version: 1,
              createdAt: "2026-01-01T00:00:00Z",
              updatedAt: "2026-01-01T00:00:00Z",
            },
          }
        : { status: 404, body: { error: { code: "not_found", message: "no product" } } },
    );
    expect(await screen.findByRole("heading", { name: "Blue mug" })).toBeTruthy();
    expect(screen.getByText("3 in stock")).toBeTruthy();
    cleanup();
    renderCatalogue("/products/p9", () => ({
      status: 404,
      body: { error: { code: "not_found", message: "no product" } },
    }));
    expect((await screen.findByRole("alert")).textContent).toContain("No such product");
  });
});
