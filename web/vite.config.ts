import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` forwards API calls to a running gateway (the local stack's default port).
const gateway = process.env.LLMCT_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  // The gateway serves dist/ at / and falls back to index.html for client-side routes,
  // so asset URLs must be absolute.
  base: "/",
  plugins: [react()],
  server: {
    proxy: {
      "/api": { target: gateway, ws: true },
      "/v1": { target: gateway },
    },
  },
  build: {
    outDir: "dist",
    target: "es2022",
    emptyOutDir: true,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    restoreMocks: true,
    unstubGlobals: true,
  },
});
