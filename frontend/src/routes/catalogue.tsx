// The catalogue: search (typos forgiven by the search service, names completed as you
// type), category facets, price and stock filters, sort and pages, all kept in the URL.
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { Link, createLazyRoute, useNavigate, useSearch } from "@tanstack/react-router";
import { useState, type FormEvent } from "react";
import { useApi } from "../api/context";
import { formatMoney } from "../format";
import { SORTS, type CatalogueSearch, type Sort } from "../router";

const PAGE_SIZE = 24;

export const Route = createLazyRoute("/")({ component: Catalogue });

export function Catalogue() {
  const search = useSearch({ from: "/" }) as CatalogueSearch;
  const navigate = useNavigate({ from: "/" });
  const api = useApi();
  const [draft, setDraft] = useState(search.q ?? "");
  const [minPrice, setMinPrice] = useState(search.minPrice ?? "");
  const [maxPrice, setMaxPrice] = useState(search.maxPrice ?? "");
  const typed = draft.trim();
  const completions = useQuery({
    queryKey: ["autocomplete", typed],
    enabled: typed.length >= 2 && typed !== search.q,
    staleTime: 60_000,
    queryFn: async () => {
      const { data } = await api.GET("/v1/search/autocomplete", { params: { query: { q: typed.slice(0, 100), limit: 8 } } });
      return data?.items ?? [];
    },
  });
  const results = useQuery({
    queryKey: ["search", search],
    placeholderData: keepPreviousData,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/search", {
        params: {
          query: {
            q: search.q,
            category: search.category,
            sort: search.sort,
            page: search.page,
            minPrice: search.minPrice,
            maxPrice: search.maxPrice,
            inStock: search.inStock,
            pageSize: PAGE_SIZE,
          },
        },
      });
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  const update = (next: Partial<CatalogueSearch>) =>
    navigate({ search: (previous: CatalogueSearch) => ({ ...previous, page: undefined, ...next }) });
  const PRICE = /^\d{1,9}(\.\d{1,2})?$/;
  const priceError =
    (minPrice.trim() && !PRICE.test(minPrice.trim())) || (maxPrice.trim() && !PRICE.test(maxPrice.trim()))
      ? "Prices are amounts such as 10 or 24.50."
      : minPrice.trim() && maxPrice.trim() && Number(minPrice) > Number(maxPrice)
        ? "The lowest price is above the highest."
        : null;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (priceError) return;
    update({
      q: draft.trim() || undefined,
      minPrice: minPrice.trim() || undefined,
      maxPrice: maxPrice.trim() || undefined,
    });
  };
  const pages = results.data ? Math.max(1, Math.ceil(results.data.total / PAGE_SIZE)) : 1;
  const page = search.page ?? 1;

  return (
    <section aria-busy={results.isFetching}>
      <form role="search" onSubmit={submit}>
        <label htmlFor="catalogue-search">Search the catalogue</label>
        <input
          id="catalogue-search"
          type="search"
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          placeholder="mug, hoodie, lamp…"
          list="catalogue-completions"
          autoComplete="off"
        />
        <datalist id="catalogue-completions">
          {(completions.data ?? []).map((name) => (
            <option key={name} value={name} />
          ))}
        </datalist>
        <button type="submit">Search</button>
        <label htmlFor="catalogue-min-price">From $</label>
        <input
          id="catalogue-min-price"
          inputMode="decimal"
          size={6}
          value={minPrice}
          aria-invalid={priceError ? true : undefined}
          aria-describedby={priceError ? "catalogue-price-error" : undefined}
          onChange={(event) => setMinPrice(event.target.value)}
        />
        <label htmlFor="catalogue-max-price">to $</label>
        <input
          id="catalogue-max-price"
          inputMode="decimal"
          size={6}
          value={maxPrice}
          aria-invalid={priceError ? true : undefined}
          aria-describedby={priceError ? "catalogue-price-error" : undefined}
          onChange={(event) => setMaxPrice(event.target.value)}
        />
        <label className="choice">
          <input
            type="checkbox"
            checked={search.inStock ?? false}
            onChange={(event) => update({ inStock: event.target.checked || undefined })}
          />{" "}
          In stock only
        </label>
        {priceError ? (
          <span id="catalogue-price-error" role="alert">
            {priceError}
          </span>
        ) : null}
        <label htmlFor="catalogue-sort">Sort</label>
        <select
          id="catalogue-sort"
          value={search.sort ?? "relevance"}
          onChange={(event) => update({ sort: event.target.value as Sort })}
        >
          {SORTS.map((sort) => (
            <option key={sort} value={sort}>
              {sort.replace("_", " ")}
            </option>
          ))}
        </select>
      </form>

      {results.isPending ? (
        <p role="status">Loading products…</p>
      ) : results.isError ? (
        <p role="alert">The catalogue could not be loaded: {results.error.message}</p>
      ) : (
        <>
          <nav aria-label="Categories">
            <button type="button" aria-pressed={!search.category} onClick={() => update({ category: undefined })}>
              All
            </button>
            {results.data.categories.map((facet) => (
              <button
                key={facet.value}
                type="button"
                aria-pressed={search.category === facet.value}
                onClick={() => update({ category: facet.value })}
              >
                {facet.value} ({facet.count})
              </button>
            ))}
          </nav>
          <p role="status">
            {results.data.total} {results.data.total === 1 ? "product" : "products"}
            {search.q ? ` for “${search.q}”` : ""}
          </p>
          {results.data.items.length === 0 ? (
            <p>Nothing matches; try fewer words or another category.</p>
          ) : (
            <ul className="products">
              {results.data.items.map((hit) => (
                <li key={hit.id}>
                  <Link to="/products/$productId" params={{ productId: hit.id }}>
                    {hit.name}
                  </Link>
                  <span className="price">{formatMoney(hit.price, hit.currency)}</span>
                  {hit.stock === 0 ? <span className="stock">Sold out</span> : null}
                </li>
              ))}
            </ul>
          )}
          <nav aria-label="Pages">
            <button type="button" disabled={page <= 1} onClick={() => navigate({ search: (s: CatalogueSearch) => ({ ...s, page: page - 1 > 1 ? page - 1 : undefined }) })}>
              Previous
            </button>
            <span>
              Page {page} of {pages}
            </span>
            <button type="button" disabled={page >= pages} onClick={() => navigate({ search: (s: CatalogueSearch) => ({ ...s, page: page + 1 }) })}>
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  );
}
