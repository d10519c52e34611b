// How an order's status reads to a person.
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
