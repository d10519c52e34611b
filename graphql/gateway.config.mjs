// Hive Gateway (The Guild's Apollo-Federation gateway), serving supergraph.graphql.
// The caller's token goes to every subgraph, which checks it and decides what the caller
// may see; the trace continues into the subgraphs.
import { defineConfig } from "@graphql-hive/gateway";

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const headers = {};
      for (const name of ["authorization", "traceparent", "tracestate", "x-request-id"]) {
        const value = request.headers.get(name);
        if (value) headers[name] = value;
      }
      return headers;
    },
  },
  // Introspection and the GraphiQL page are for local runs; the REST gateway fronts this.
  graphiql: true,
});
