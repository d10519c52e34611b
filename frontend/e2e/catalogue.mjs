// The storefront in a real browser (Debian's Chromium driven by playwright-core) against
// a running shop: search with a typo, open the product. Screenshots go to $SCREENSHOTS.
//   STOREFRONT_URL=http://localhost:5173 node e2e/catalogue.mjs
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.STOREFRONT_URL ?? "http://localhost:5173";
const screenshots = process.env.SCREENSHOTS ?? "e2e-screenshots";
mkdirSync(screenshots, { recursive: true });

// The flags keep Chromium off the network it cannot reach here and out of the sandbox
// root cannot use.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20_000);
  await page.goto(base);
  await page.getByRole("status").filter({ hasText: /\d+ products/ }).waitFor();
  await page.screenshot({ path: join(screenshots, "catalogue.png"), fullPage: true });

  // "stonware" is not a word in the catalogue; the search service forgives the typo.
  await page.getByLabel("Search the catalogue").fill("stonware mug");
  await page.getByRole("button", { name: "Search" }).click();
  const first = page.getByRole("link", { name: /Stoneware mug/ }).first();
  await first.waitFor();
  if (!new URL(page.url()).searchParams.get("q")?.includes("stonware")) {
    throw new Error(`the search is not in the URL: ${page.url()}`);
  }
  await page.screenshot({ path: join(screenshots, "search-with-typo.png"), fullPage: true });

  await first.click();
  const heading = page.getByRole("heading", { name: /Stoneware mug/ });
  await heading.waitFor();
  const price = await page.locator(".price").first().textContent();
  if (!price || !/^\$\d+\.\d\d$/.test(price.trim())) throw new Error(`no price on the product page: ${price}`);
  await page.screenshot({ path: join(screenshots, "product.png"), fullPage: true });
  console.log(`storefront e2e passed; screenshots in ${screenshots}`);
} finally {
  await browser.close();
}
