import { useQuery } from "@tanstack/react-query";
import { useApi } from "../api/context";

/** The gateways checkout offers and how a browser pays through each (rarely changes). */
export function usePaymentGateways() {
  const api = useApi();
  return useQuery({
    queryKey: ["payment-gateways"],
    staleTime: 5 * 60_000,
    queryFn: async () => {
      const { data, error } = await api.GET("/v1/payments/gateways");
      if (error) throw new Error("payment gateways unavailable");
      return data.items;
    },
  });
}
