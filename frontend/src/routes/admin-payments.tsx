// Payments over a date range: money taken per day as a bar chart (an SVG, with the same
// figures in a table for screen readers), and totals by status and by gateway.
import { useQuery } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import type { paths } from "../api/client";
import { useApi } from "../api/context";
import { addDecimals, formatMoney } from "../format";

export const Route = createLazyRoute("/admin/payments")({ component: AdminPayments });

type Stats = paths["/v1/admin/payments/stats"]["get"]["responses"]["200"]["content"]["application/json"];
type Row = Stats["rows"][number];

/** Money taken (succeeded, or refunded later) per day in one currency, every day of the range. */
export function dailyTakings(rows: Row[], currency: string, from: string, to: string) {
  const days = new Map<string, { amount: string; count: number }>();
  for (let day = new Date(`${from}T00:00:00Z`); day <= new Date(`${to}T00:00:00Z`); day.setUTCDate(day.getUTCDate() + 1)) {
    days.set(day.toISOString().slice(0, 10), { amount: "0.00", count: 0 });
  }
  for (const row of rows) {
    if (row.currency !== currency || (row.status !== "succeeded" && row.status !== "refunded")) continue;
    const day = days.get(row.day);
    if (day) days.set(row.day, { amount: addDecimals(day.amount, row.amount), count: day.count + row.count });
  }
  return [...days.entries()].map(([day, totals]) => ({ day, ...totals }));
}

function isoDay(offsetDays: number) {
  const day = new Date();
  day.setUTCDate(day.getUTCDate() + offsetDays);
  return day.toISOString().slice(0, 10);
}

export function AdminPayments() {
  const api = useApi();
  const [from, setFrom] = useState(() => isoDay(-13));
  const [to, setTo] = useState(() => isoDay(0));
  const stats = useQuery({
    queryKey: ["payment-stats", from, to],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/admin/payments/stats", { params: { query: { from, to } } });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const rangeError = from > to ? "The first day is after the last." : null;
  return (
    <section>
      <h1>Payments</h1>
      <form className="inline" aria-label="Date range" onSubmit={(event) => event.preventDefault()}>
        <label htmlFor="stats-from">From</label>
        <input id="stats-from" type="date" value={from} max={to} onChange={(event) => event.target.value && setFrom(event.target.value)} />
        <label htmlFor="stats-to">To</label>
        <input id="stats-to" type="date" value={to} min={from} onChange={(event) => event.target.value && setTo(event.target.value)} />
        {rangeError ? <span role="alert">{rangeError}</span> : null}
      </form>
      {stats.isPending ? <p role="status">Loading…</p> : null}
      {stats.isError ? <p role="alert">Payment figures could not be loaded: {stats.error.message}</p> : null}
      {stats.data ? <Figures stats={stats.data} /> : null}
    </section>
  );
}

function Figures({ stats }: { stats: Stats }) {
  const currencies = [...new Set(stats.rows.map((row) => row.currency))].sort();
  const [chosen, setChosen] = useState<string | undefined>(undefined);
  const currency = chosen && currencies.includes(chosen) ? chosen : (currencies[0] ?? "USD");
  const days = dailyTakings(stats.rows, currency, stats.from, stats.to);
  const highest = Math.max(...days.map((day) => Number(day.amount)), 1);
  const width = 640;
  const height = 200;
  const barWidth = width / Math.max(days.length, 1);
  return (
    <>
      {currencies.length > 1 ? (
        <p>
          <label htmlFor="stats-currency">Currency</label>
          <select id="stats-currency" value={currency} onChange={(event) => setChosen(event.target.value)}>
            {currencies.map((code) => (
              <option key={code}>{code}</option>
            ))}
          </select>
        </p>
      ) : null}
      <h2>Taken per day ({currency})</h2>
      <svg
        className="chart"
        viewBox={`0 0 ${width} ${height + 20}`}
        role="img"
        aria-label={`Money taken per day in ${currency}, ${stats.from} to ${stats.to}`}
        data-testid="payments-chart"
      >
        {days.map((day, index) => {
          const barHeight = (Number(day.amount) / highest) * height;
          return (
            <g key={day.day}>
              <rect x={index * barWidth + 2} y={height - barHeight} width={barWidth - 4} height={barHeight} fill="var(--accent)">
                <title>
                  {day.day}: {formatMoney(day.amount, currency)} ({day.count} payments)
                </title>
              </rect>
              {days.length <= 16 || index % 7 === 0 ? (
                <text x={index * barWidth + barWidth / 2} y={height + 14} textAnchor="middle" fontSize="10">
                  {day.day.slice(5)}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
      <table className="visually-hidden">
        <caption>Money taken per day</caption>
        <tbody>
          {days.map((day) => (
            <tr key={day.day}>
              <th scope="row">{day.day}</th>
              <td>{formatMoney(day.amount, currency)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="columns">
        <Totals title="By status" totals={stats.byStatus} />
        <Totals title="By gateway" totals={stats.byGateway} />
      </div>
    </>
  );
}

function Totals({ title, totals }: { title: string; totals: Stats["byStatus"] }) {
  const groups = Object.entries(totals);
  return (
    <section aria-label={title}>
      <h2>{title}</h2>
      {groups.length === 0 ? <p>No payments in this range.</p> : null}
      <table>
        <tbody>
          {groups.flatMap(([group, byCurrency]) =>
            Object.entries(byCurrency).map(([currency, figures]) => (
              <tr key={`${group}-${currency}`}>
                <th scope="row">{group}</th>
                <td>{figures.count}</td>
                <td className="price">{formatMoney(figures.amount, currency)}</td>
                <td className="price">
                  {figures.refunded !== "0" && figures.refunded !== "0.00" ? `${formatMoney(figures.refunded, currency)} refunded` : ""}
                </td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </section>
  );
}
