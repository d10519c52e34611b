// Payments over a date range: money taken per day as a bar chart (an SVG, with the same
// figures in a table for screen readers), totals by status and by gateway, and the report
// (taken, refunded, kept; average order value; refund and dispute rates) with its CSV.
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
      {rangeError ? null : <Report from={from} to={to} />}
    </section>
  );
}

const percent = (rate: string) => `${(Number(rate) * 100).toFixed(1)} %`;

/** Each currency's money in the range, and the days as a CSV download. */
function Report({ from, to }: { from: string; to: string }) {
  const api = useApi();
  const report = useQuery({
    queryKey: ["payment-report", from, to],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/admin/payments/report", { params: { query: { from, to } } });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const [downloadError, setDownloadError] = useState<string | null>(null);
  const download = async () => {
    setDownloadError(null);
    const { data, error } = await api.GET("/v1/admin/payments/report.csv", {
      params: { query: { from, to } },
      parseAs: "blob",
    });
    if (error || !data) {
      setDownloadError(error?.error.message ?? "The report could not be downloaded.");
      return;
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(data);
    link.download = `payments-${from}-${to}.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
  };
  return (
    <section aria-labelledby="payments-report-title">
      <h2 id="payments-report-title">Report</h2>
      {report.isPending ? <p role="status">Loading…</p> : null}
      {report.isError ? <p role="alert">The report could not be loaded: {report.error.message}</p> : null}
      {report.data && report.data.totals.length === 0 ? <p>No money moved in this range.</p> : null}
      {report.data && report.data.totals.length > 0 ? (
        <table>
          <caption>Money per currency</caption>
          <thead>
            <tr>
              <th scope="col">Currency</th>
              <th scope="col">Taken</th>
              <th scope="col">Refunded</th>
              <th scope="col">Kept</th>
              <th scope="col">Average order</th>
              <th scope="col">Refund rate</th>
              <th scope="col">Dispute rate</th>
            </tr>
          </thead>
          <tbody>
            {report.data.totals.map((totals) => (
              <tr key={totals.currency} data-testid={`report-${totals.currency}`}>
                <th scope="row">{totals.currency}</th>
                <td className="price">{formatMoney(totals.revenue, totals.currency)}</td>
                <td className="price">{formatMoney(totals.refunded, totals.currency)}</td>
                <td className="price">{formatMoney(totals.net, totals.currency)}</td>
                <td className="price">{formatMoney(totals.averageOrderValue, totals.currency)}</td>
                <td>{percent(totals.refundRate)}</td>
                <td>{percent(totals.disputeRate)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <p>
        <button type="button" onClick={() => void download()}>
          Download CSV
        </button>
        {downloadError ? <span role="alert"> {downloadError}</span> : null}
      </p>
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
