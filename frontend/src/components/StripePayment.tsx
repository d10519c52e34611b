// Card payment through Stripe: Stripe.js (loaded from js.stripe.com only when a shopper
// pays with Stripe, as Stripe requires for card data to stay off this site) shows its
// Payment Element for the order's PaymentIntent and confirms it; the webhook then tells
// the payment service, and the order page follows the status as usual.
import { useEffect, useRef, useState } from "react";

/** The small part of Stripe.js this page uses. */
export interface StripeJs {
  elements(options: { clientSecret: string }): StripeElements;
  confirmPayment(options: {
    elements: StripeElements;
    redirect: "if_required";
    confirmParams: { return_url: string };
  }): Promise<{ error?: { message?: string } }>;
}
export interface StripeElements {
  create(kind: "payment"): { mount(element: HTMLElement): void; destroy(): void };
}
export type StripeLoader = (publishableKey: string) => Promise<StripeJs>;

const STRIPE_JS = "https://js.stripe.com/v3/";

/** Adds Stripe's script once and returns its client for the key. */
export const loadStripeJs: StripeLoader = (publishableKey) =>
  new Promise((resolve, reject) => {
    const ready = () => {
      const factory = (window as unknown as { Stripe?: (key: string) => StripeJs }).Stripe;
      if (factory) resolve(factory(publishableKey));
      else reject(new Error("Stripe.js did not load"));
    };
    if ((window as unknown as { Stripe?: unknown }).Stripe) return ready();
    const script = document.createElement("script");
    script.src = STRIPE_JS;
    script.async = true;
    script.onload = ready;
    script.onerror = () => reject(new Error("Stripe.js could not be loaded"));
    document.head.appendChild(script);
  });

export function StripePayment({
  publishableKey,
  clientSecret,
  load = loadStripeJs,
  onConfirmed,
}: {
  publishableKey: string;
  clientSecret: string;
  load?: StripeLoader;
  onConfirmed: () => void;
}) {
  const mountPoint = useRef<HTMLDivElement>(null);
  const [stripe, setStripe] = useState<{ js: StripeJs; elements: StripeElements } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [paying, setPaying] = useState(false);

  useEffect(() => {
    let element: { destroy(): void } | undefined;
    let cancelled = false;
    load(publishableKey)
      .then((js) => {
        if (cancelled || !mountPoint.current) return;
        const elements = js.elements({ clientSecret });
        const payment = elements.create("payment");
        payment.mount(mountPoint.current);
        element = payment;
        setStripe({ js, elements });
      })
      .catch((failure: Error) => setError(failure.message));
    return () => {
      cancelled = true;
      element?.destroy();
    };
  }, [publishableKey, clientSecret, load]);

  const pay = async () => {
    if (!stripe) return;
    setPaying(true);
    setError(null);
    const result = await stripe.js.confirmPayment({
      elements: stripe.elements,
      redirect: "if_required",
      confirmParams: { return_url: window.location.href },
    });
    setPaying(false);
    if (result.error) setError(result.error.message ?? "The payment was not accepted.");
    else onConfirmed();
  };

  return (
    <form
      aria-label="Card payment"
      onSubmit={(event) => {
        event.preventDefault();
        void pay();
      }}
    >
      <div ref={mountPoint} data-testid="stripe-payment-element" />
      {!stripe && !error ? <p role="status">Loading the card form…</p> : null}
      {error ? <p role="alert">{error}</p> : null}
      <button type="submit" disabled={!stripe || paying}>
        {paying ? "Paying…" : "Pay by card"}
      </button>
    </form>
  );
}
