// Money is a decimal string from the API; it is shown, never computed with, here.
export function formatMoney(amount: string, currency: string, locale = "en-US"): string {
  const value = Number(amount);
  if (!Number.isFinite(value)) return `${amount} ${currency}`;
  return new Intl.NumberFormat(locale, { style: "currency", currency }).format(value);
}

/** The sum of two decimal strings, exactly (in hundred-thousandths; money here has fewer places). */
export function addDecimals(a: string, b: string): string {
  const scale = 5;
  const toUnits = (value: string) => {
    const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value.trim());
    if (!match) throw new Error(`not a decimal: ${value}`);
    const [, sign, whole, fraction = ""] = match;
    const units = BigInt(whole + fraction.padEnd(scale, "0").slice(0, scale));
    return sign ? -units : units;
  };
  const sum = toUnits(a) + toUnits(b);
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(scale + 1, "0");
  const fraction = digits.slice(-scale).replace(/0+$/, "").padEnd(2, "0");
  return `${negative ? "-" : ""}${digits.slice(0, -scale)}.${fraction}`;
}
