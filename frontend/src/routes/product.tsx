// One product: details, price, stock.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, createLazyRoute, useParams } from "@tanstack/react-router";
import { useApi } from "../api/context";
import { formatMoney } from "../format";

export const Route = createLazyRoute("/products/$productId")({ component: ProductPage });

export function ProductPage() {
  const { productId } = useParams({ from: "/products/$productId" });
  const api = useApi();
  const queryClient = useQueryClient();
  const addToCart = useMutation({
    mutationFn: async () => {
      const { data, error } = await api.POST("/v1/cart/items", { body: { productId, quantity: 1 } });
      if (error) throw new Error(error.error.message);
      return data;
    },
    onSuccess: (cart) => queryClient.setQueryData(["cart"], cart),
  });
  const product = useQuery({
    queryKey: ["product", productId],
    queryFn: async () => {
      const { data, error, response } = await api.GET("/v1/products/{id}", {
        params: { path: { id: productId } },
      });
      if (response.status === 404) return null;
      if (error) throw new Error(error.error.message);
      return data;
    },
  });
  if (product.isPending) return <p role="status">Loading…</p>;
  if (product.isError) return <p role="alert">The product could not be loaded: {product.error.message}</p>;
  if (!product.data) {
    return (
      <p role="alert">
        No such product. <Link to="/" search={{}}>Back to the catalogue</Link>
      </p>
    );
  }
  const item = product.data;
  const available = item.stock - item.reserved;
  return (
    <article>
      <h1>{item.name}</h1>
      <p className="price">{formatMoney(item.price.amount, item.price.currency)}</p>
      <p>{item.description}</p>
      <p>{available > 0 ? `${available} in stock` : "Sold out"}</p>
      <p>
        <button type="button" disabled={available <= 0 || addToCart.isPending} onClick={() => addToCart.mutate()}>
          {addToCart.isPending ? "Adding…" : "Add to cart"}
        </button>
        {addToCart.isSuccess ? <span role="status"> Added to your cart.</span> : null}
        {addToCart.isError ? <span role="alert"> {addToCart.error.message}</span> : null}
      </p>
      <p>
        <Link to="/" search={{ category: item.category }}>
          More in {item.category}
        </Link>
      </p>
    </article>
  );
}
