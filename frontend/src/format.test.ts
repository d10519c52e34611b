import { describe, expect, it } from "vitest";
import { addDecimals, formatMoney } from "./format";
import { dailyTakings } from "./routes/admin-payments";

describe("addDecimals", () => {
  it("adds exactly where floating point does not", () => {
    expect(0.1 + 0.2).not.toBe(0.3);
    expect(addDecimals("0.1", "0.2")).toBe("0.30");
    expect(addDecimals("37.50", "14.90")).toBe("52.40");
    expect(addDecimals("19.999", "0.001")).toBe("20.00");
    expect(addDecimals("5", "-7.25")).toBe("-2.25");
    expect(() => addDecimals("1e3", "1")).toThrow("not a decimal");
  });
  it("formats money in the currency", () => {
    expect(formatMoney("52.4", "USD")).toBe("$52.40");
    expect(formatMoney("oops", "EUR")).toBe("oops EUR");
  });
});

describe("dailyTakings", () => {
  it("sums succeeded and refunded payments per day in one currency, every day of the range", () => {
    const row = (day: string, status: string, currency: string, amount: string, count = 1) => ({
      day,
      gateway: "offline",
      status,
      currency,
      count,
      amount,
      refunded: "0.00",
    });
    const days = dailyTakings(
      [
        row("2026-12-01", "succeeded", "USD", "10.10", 2),
        row("2026-12-01", "refunded", "USD", "0.20"),
        row("2026-12-01", "failed", "USD", "99.00"),
        row("2026-12-03", "succeeded", "EUR", "5.00"),
        row("2026-12-03", "succeeded", "USD", "1.00"),
      ],
      "USD",
      "2026-11-30",
      "2026-12-03",
    );
    expect(days).toEqual([
      { day: "2026-11-30", amount: "0.00", count: 0 },
      { day: "2026-12-01", amount: "10.30", count: 3 },
      { day: "2026-12-02", amount: "0.00", count: 0 },
      { day: "2026-12-03", amount: "1.00", count: 1 },
    ]);
  });
});
