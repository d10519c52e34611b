// Composes the subgraphs' SDL (subgraphs/*.graphql, kept equal to the services' schemas by
// a test) into the supergraph the gateway serves (supergraph.graphql) and the public API
// clients see (schema.graphql).
//
//   node compose.mjs            write both files; refuses a breaking change to the public API
//   node compose.mjs --check    fail on a composition error, a breaking change or stale files
//   node compose.mjs --out F    write only the supergraph to F, with subgraph URLs from
//                               COMMERCE_SUBGRAPH_<NAME>_URL (for tests and deployments)
//
// A breaking change (a field, type or argument clients may use removed or changed) is
// written only with ALLOW_BREAKING=1: that is the deliberate, reviewed override.
import { readFileSync, writeFileSync } from "node:fs";
import { buildSchema, findBreakingChanges, parse } from "graphql";
import { composeServices } from "@theguild/federation-composition";

/** The subgraphs and where `make run` serves them. */
const SUBGRAPHS = { auth: 8081, product: 8082, order: 8084 };

const here = new URL(".", import.meta.url);
const read = (file) => {
  try {
    return readFileSync(new URL(file, here), "utf8");
  } catch {
    return null;
  }
};
const args = process.argv.slice(2);
const out = args.includes("--out") ? args[args.indexOf("--out") + 1] : null;
const check = args.includes("--check");

const services = Object.entries(SUBGRAPHS).map(([name, port]) => ({
  name,
  url:
    (out && process.env[`COMMERCE_SUBGRAPH_${name.toUpperCase()}_URL`]) ||
    `http://127.0.0.1:${port}/graphql`,
  typeDefs: parse(read(`subgraphs/${name}.graphql`) ?? ""),
}));
const result = composeServices(services);
if (result.errors) {
  for (const error of result.errors) console.error(`composition failed: ${error.message}`);
  process.exit(1);
}
if (out) {
  writeFileSync(out, result.supergraphSdl);
  process.exit(0);
}

const published = read("schema.graphql");
if (published !== null && !process.env.ALLOW_BREAKING) {
  const breaking = findBreakingChanges(buildSchema(published), buildSchema(result.publicSdl));
  if (breaking.length > 0) {
    console.error("breaking changes to the public GraphQL API (graphql/schema.graphql):");
    for (const change of breaking) console.error(`  ${change.type}: ${change.description}`);
    console.error("make the change additive, or write it with ALLOW_BREAKING=1 npm run compose");
    process.exit(1);
  }
}
const outputs = { "supergraph.graphql": result.supergraphSdl, "schema.graphql": result.publicSdl };
if (check) {
  const stale = Object.entries(outputs)
    .filter(([file, content]) => read(file) !== content)
    .map(([file]) => `graphql/${file}`);
  if (stale.length > 0) {
    console.error(`stale: ${stale.join(", ")}; run \`cd graphql && npm run compose\``);
    process.exit(1);
  }
  console.log("supergraph composes; no breaking change; files up to date");
} else {
  for (const [file, content] of Object.entries(outputs)) writeFileSync(new URL(file, here), content);
  console.log("wrote graphql/supergraph.graphql and graphql/schema.graphql");
}
