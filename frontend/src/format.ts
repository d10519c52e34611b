// Money is a decimal string from the API; it is shown, never computed with, here.
export function formatMoney(amount: string, currency: string, locale = "en-US"): string {
  const value = Number(amount);
  if (!Number.isFinite(value)) return `${amount} ${currency}`;
  return new Intl.NumberFormat(locale, { style: "currency", currency }).format(value);
}
