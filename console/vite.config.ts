import { defineConfig } from "vite";

// Fixed file names (no content hashes): the broker embeds dist/ with include_str! and serves
// it under /console; `npm run check` rebuilds and compares with the committed files.
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    modulePreload: false,
    cssCodeSplit: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/console.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/console[extname]",
      },
    },
  },
});
