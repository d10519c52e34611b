// How an order's status reads to a person, and the order list both order pages read.
import { useInfiniteQuery } from "@tanstack/react-query";
import { useApi } from "../api/context";

export const STATUS_TEXT: Record<string, string> = {
  PLACING: "Placing your order…",
  PENDING_PAYMENT: "Waiting for your payment",
  PAID: "Paid — confirming…",
  CONFIRMED: "Confirmed",
  SHIPPED: "Shipped",
  DELIVERED: "Delivered",
  EXPIRED: "Expired (not paid in time)",
  CANCELED: "Canceled",
  FAILED: "Could not be placed",
};

/** Orders a page at a time, newest first (the caller's own; every customer's for staff). */
export function useOrderPages(key: string, options: { pageSize: number; enabled?: boolean; refetchInterval?: number }) {
  const api = useApi();
  return useInfiniteQuery({
    queryKey: [key],
    enabled: options.enabled ?? true,
    refetchInterval: options.refetchInterval,
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) => {
      const { data, error } = await api.GET("/v1/orders", {
        params: { query: { limit: options.pageSize, ...(pageParam ? { before: pageParam } : {}) } },
      });
      if (error) throw new Error(error.error.message);
      return data;
    },
    getNextPageParam: (last) => last.nextBefore ?? undefined,
  });
}
