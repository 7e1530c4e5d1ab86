/** drizzle-kit: generates SQL migrations for D1 from schema/schema.ts (`npm run db:generate`). */
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "sqlite",
  schema: "./schema/schema.ts",
  out: "./schema/migrations",
});
