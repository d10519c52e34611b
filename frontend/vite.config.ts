/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves on :5173 and sends /v1 (the chat WebSocket too) to the REST gateway `make run` starts
// (COMMERCE_GATEWAY_URL points elsewhere, as the end-to-end test does).
const gateway = process.env.COMMERCE_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  server: {
    port: 5173,
    proxy: {
      "/v1": { target: gateway, ws: true },
      "/graphql": gateway,
    },
  },
  // `vite preview` (what `make run` serves) proxies the same way.
  preview: {
    port: 5173,
    proxy: {
      "/v1": { target: gateway, ws: true },
      "/graphql": gateway,
    },
  },
  build: {
    outDir: "dist",
    sourcemap: true,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.tsx", "src/**/*.test.ts"],
    setupFiles: ["src/test-setup.ts"],
  },
});
