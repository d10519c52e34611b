// Node 20 wants `with { type: "json" }` on JSON imports; the workflow parser's build omits
// it. This loader hook supplies it.
export async function load(url, context, nextLoad) {
  if (url.endsWith(".json")) {
    return nextLoad(url, { ...context, importAttributes: { type: "json" } });
  }
  return nextLoad(url, context);
}
