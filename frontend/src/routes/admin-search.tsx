// What shoppers search for: the most searched queries of the last days, and apart those
// that found nothing (products the catalogue lacks, or words it does not know).
import { useQuery } from "@tanstack/react-query";
import { createLazyRoute } from "@tanstack/react-router";
import { useState } from "react";
import { useApi } from "../api/context";

export const Route = createLazyRoute("/admin/search")({ component: AdminSearch });

const PERIODS = [1, 7, 30] as const;

export function AdminSearch() {
  const api = useApi();
  const [days, setDays] = useState<(typeof PERIODS)[number]>(7);
  const report = useQuery({
    queryKey: ["search-analytics", days],
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/admin/search/analytics", {
        params: { query: { days, limit: 20 } },
      });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  return (
    <section aria-labelledby="admin-search-title">
      <h2 id="admin-search-title">Searches</h2>
      <label htmlFor="admin-search-days">Period</label>
      <select
        id="admin-search-days"
        value={days}
        onChange={(event) => setDays(Number(event.target.value) as (typeof PERIODS)[number])}
      >
        {PERIODS.map((period) => (
          <option key={period} value={period}>
            {period === 1 ? "Today" : `Last ${period} days`}
          </option>
        ))}
      </select>
      {report.isPending ? (
        <p role="status">Loading searches…</p>
      ) : report.isError ? (
        <p role="alert">The searches could not be loaded: {report.error.message}</p>
      ) : (
        <>
          <QueryTable caption="Most searched" rows={report.data.searches} empty="Nobody searched yet." />
          <QueryTable
            caption="Searched, found nothing"
            rows={report.data.noResults}
            empty="Every search found something."
          />
        </>
      )}
    </section>
  );
}

function QueryTable(props: { caption: string; rows: { query: string; count: number }[]; empty: string }) {
  if (props.rows.length === 0) {
    return (
      <p>
        <strong>{props.caption}:</strong> {props.empty}
      </p>
    );
  }
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">Query</th>
          <th scope="col">Searches</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map((row) => (
          <tr key={row.query}>
            <td>{row.query}</td>
            <td>{row.count}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
