/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves on :5173 and sends /v1 to the REST gateway `make run` starts.
export default defineConfig({
  plugins: [react()],
  server: {
    port: 5173,
    proxy: {
      "/v1": "http://127.0.0.1:8080",
      "/graphql": "http://127.0.0.1:8080",
    },
  },
  // `vite preview` (what `make run` serves) proxies the same way.
  preview: {
    port: 5173,
    proxy: {
      "/v1": "http://127.0.0.1:8080",
      "/graphql": "http://127.0.0.1:8080",
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
