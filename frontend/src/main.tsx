import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { RouterProvider } from "@tanstack/react-router";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ApiProvider } from "./api/context";
import { createSessionClient } from "./session";
import { SessionProvider } from "./session-context";
import { createAppRouter } from "./router";
import { API_BASE } from "./config";
import "./styles.css";

const queryClient = new QueryClient({
  defaultOptions: { queries: { staleTime: 30_000, retry: 1 } },
});
const router = createAppRouter(queryClient);
// The gateway: same origin by default (the Gateway routes /v1 and / on one host).
const { api, session } = createSessionClient({
  baseUrl: API_BASE,
  storage: window.localStorage,
});
// A stored session starts with a refresh (the access token was only in memory).
void session.refresh();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <SessionProvider store={session}>
      <ApiProvider client={api}>
        <QueryClientProvider client={queryClient}>
          <RouterProvider router={router} />
        </QueryClientProvider>
      </ApiProvider>
    </SessionProvider>
  </StrictMode>,
);
