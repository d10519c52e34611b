// The back office's search analytics and the shoppers' "best selling" order, through the
// real router, query cache and typed client over a fake network.
import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { json, renderShop } from "../test-shop";

afterEach(cleanup);

describe("search analytics", () => {
  it("lists what was searched and what found nothing, for the period chosen", async () => {
    const { calls } = renderShop(
      "/admin/search",
      ({ url }) => {
        if (url.pathname !== "/v1/admin/search/analytics") return undefined;
        const days = Number(url.searchParams.get("days"));
        return json(200, {
          days,
          searches: [
            { query: "desk lamp", count: days * 4 },
            { query: "mug", count: days },
          ],
          noResults: days === 1 ? [] : [{ query: "kettle", count: 3 }],
        });
      },
      { role: "support" },
    );
    const searched = await screen.findByRole("table", { name: "Most searched" });
    expect(within(searched).getByRole("row", { name: "desk lamp 28" })).toBeTruthy();
    const missing = screen.getByRole("table", { name: "Searched, found nothing" });
    expect(within(missing).getByRole("row", { name: "kettle 3" })).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Period"), { target: { value: "1" } });
    expect(await screen.findByRole("row", { name: "desk lamp 4" })).toBeTruthy();
    expect(screen.getByText("Every search found something.")).toBeTruthy();
    const asked = calls.filter((call) => call.url.pathname === "/v1/admin/search/analytics");
    expect(asked.map((call) => call.url.searchParams.get("days"))).toEqual(["7", "1"]);
  });

  it("says why when the server refuses", async () => {
    renderShop(
      "/admin/search",
      ({ url }) =>
        url.pathname === "/v1/admin/search/analytics"
          ? json(403, { error: { code: "forbidden", message: "staff only" } })
          : undefined,
      { role: "admin" },
    );
    expect((await screen.findByRole("alert")).textContent).toContain("staff only");
  });
});

describe("best selling", () => {
  it("asks search for the best sellers when the shopper sorts by them", async () => {
    const { calls, router } = renderShop("/?q=lamp", ({ url }) =>
      url.pathname === "/v1/search"
        ? json(200, { items: [], total: 0, page: 1, pageSize: 24, categories: [] })
        : undefined,
    );
    fireEvent.change(await screen.findByLabelText("Sort"), { target: { value: "best_selling" } });
    expect(screen.getByRole("option", { name: "best selling" })).toBeTruthy();
    await waitFor(() =>
      expect(
        calls.filter((call) => call.url.pathname === "/v1/search").at(-1)?.url.searchParams.get("sort"),
      ).toBe("best_selling"),
    );
    expect(router.state.location.search).toEqual({ q: "lamp", sort: "best_selling" });
  });
});
