// The card form with a stand-in for Stripe.js (the real script is served only by
// js.stripe.com): the element is mounted for the order's client secret, a refusal is
// shown, an accepted payment is reported.
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { StripePayment, type StripeJs } from "./StripePayment";

afterEach(cleanup);

function fakeStripe(outcomes: ({ error?: { message: string } } | Record<string, never>)[]) {
  const calls: { loadedWith?: string; clientSecret?: string; mounted?: HTMLElement; confirmations: number } = {
    confirmations: 0,
  };
  const js: StripeJs = {
    elements: ({ clientSecret }) => {
      calls.clientSecret = clientSecret;
      return {
        create: () => ({
          mount: (element) => {
            calls.mounted = element;
          },
          destroy: () => undefined,
        }),
      };
    },
    confirmPayment: async ({ redirect }) => {
      expect(redirect).toBe("if_required");
      calls.confirmations += 1;
      return outcomes.shift() ?? {};
    },
  };
  const load = async (key: string) => {
    calls.loadedWith = key;
    return js;
  };
  return { calls, load };
}

describe("StripePayment", () => {
  it("mounts the payment element for the client secret, shows a decline, then reports success", async () => {
    const { calls, load } = fakeStripe([{ error: { message: "Your card was declined." } }, {}]);
    let confirmed = 0;
    render(
      <StripePayment publishableKey="pk_test_1" clientSecret="pi_1_secret_2" load={load} onConfirmed={() => (confirmed += 1)} />,
    );
    const pay = await screen.findByRole("button", { name: "Pay by card" });
    await waitFor(() => expect((pay as HTMLButtonElement).disabled).toBe(false));
    expect(calls.loadedWith).toBe("pk_test_1");
    expect(calls.clientSecret).toBe("pi_1_secret_2");
    expect(calls.mounted).toBe(screen.getByTestId("stripe-payment-element"));

    fireEvent.click(pay);
    expect((await screen.findByRole("alert")).textContent).toBe("Your card was declined.");
    expect(confirmed).toBe(0);
    fireEvent.click(pay);
    await waitFor(() => expect(confirmed).toBe(1));
    expect(calls.confirmations).toBe(2);
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("says so when Stripe.js cannot be loaded", async () => {
    render(
      <StripePayment
        publishableKey="pk"
        clientSecret="s"
        load={() => Promise.reject(new Error("Stripe.js could not be loaded"))}
        onConfirmed={() => undefined}
      />,
    );
    expect((await screen.findByRole("alert")).textContent).toBe("Stripe.js could not be loaded");
    expect((screen.getByRole("button", { name: "Pay by card" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
