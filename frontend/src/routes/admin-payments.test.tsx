// The payments page's report: each currency's money taken, refunded and kept, the average
// order and the rates, and the days downloaded as CSV, through the real router, query
// cache and typed client over a fake network.
import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { json, renderShop } from "../test-shop";

afterEach(cleanup);

const CSV = "day,gateway,currency,paid,revenue,refunds,refunded,net,disputes\n2026-12-07,offline,USD,4,100.00,1,10.00,90.00,0\n";

function payments({ url }: { url: URL }) {
  if (url.pathname === "/v1/admin/payments/stats") {
    return json(200, { from: url.searchParams.get("from"), to: url.searchParams.get("to"), rows: [], byStatus: {}, byGateway: {} });
  }
  if (url.pathname === "/v1/admin/payments/report") {
    return json(200, {
      from: url.searchParams.get("from"),
      to: url.searchParams.get("to"),
      totals: [
        {
          currency: "USD",
          paid: 4,
          revenue: "100.00",
          refunds: 1,
          refunded: "10.00",
          net: "90.00",
          averageOrderValue: "25.00",
          refundRate: "0.25",
          disputeRate: "0",
        },
      ],
      days: [],
    });
  }
  if (url.pathname === "/v1/admin/payments/report.csv") {
    return new Response(CSV, { headers: { "content-type": "text/csv; charset=utf-8" } });
  }
  return undefined;
}

describe("the payment report", () => {
  it("shows each currency's money and rates, and downloads the days as CSV", async () => {
    const created: Blob[] = [];
    URL.createObjectURL = vi.fn((blob: Blob) => {
      created.push(blob);
      return "blob:report";
    });
    URL.revokeObjectURL = vi.fn();
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    const { calls } = renderShop("/admin/payments", payments, { role: "support" });
    const usd = await screen.findByTestId("report-USD");
    expect(within(usd).getByText("$90.00")).toBeTruthy();
    expect(within(usd).getByText("$25.00")).toBeTruthy();
    expect(within(usd).getByText("25.0 %")).toBeTruthy();

    fireEvent.click(screen.getByRole("button", { name: "Download CSV" }));
    await waitFor(() => expect(click).toHaveBeenCalled());
    expect(await created[0]?.text()).toBe(CSV);
    const asked = calls.find((call) => call.url.pathname === "/v1/admin/payments/report.csv");
    expect(asked?.url.searchParams.get("from")).toBeTruthy();
    click.mockRestore();
  });
});
