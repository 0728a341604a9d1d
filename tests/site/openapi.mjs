// Validates the worker's /openapi.json against the OpenAPI 3.1 JSON Schema, resolves every
// $ref, and proves the validator is not a no-op by feeding it broken copies.
// Usage: node tests/site/openapi.mjs http://127.0.0.1:PORT   (exit 1 on any failure)
import { Validator } from "@seriousme/openapi-schema-validator";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/site/openapi.mjs <base URL>");
  process.exit(2);
}

const resp = await fetch(`${base}/openapi.json`);
if (resp.status !== 200 || !resp.headers.get("content-type").startsWith("application/json")) {
  console.error(`FAIL /openapi.json answered ${resp.status} ${resp.headers.get("content-type")}`);
  process.exit(1);
}
const doc = await resp.json();

async function validate(spec) {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(spec));
  return { result, validator };
}

const { result, validator } = await validate(doc);
if (!result.valid) {
  console.error("FAIL /openapi.json is not a valid OpenAPI document:");
  console.error(JSON.stringify(result.errors, null, 2));
  process.exit(1);
}
if (validator.version !== "3.1") {
  console.error(`FAIL expected OpenAPI 3.1, the validator read ${validator.version}`);
  process.exit(1);
}
// Every $ref must resolve (resolveRefs throws on a dangling one).
validator.resolveRefs();

const broken = [
  ["no info", (d) => delete d.info],
  ["a path not starting with /", (d) => (d.paths["v1/nowhere"] = {})],
  ["a response without a description", (d) => delete d.paths["/_edgecache/health"].get.responses["200"].description],
  ["a parameter without `in`", (d) => delete d.paths["/v1/{relation}"].parameters[0].in],
];
for (const [what, breakIt] of broken) {
  const copy = structuredClone(doc);
  breakIt(copy);
  const { result: r } = await validate(copy);
  if (r.valid) {
    console.error(`FAIL the validator accepted a document with ${what}`);
    process.exit(1);
  }
}
const operations = Object.values(doc.paths).flatMap((p) =>
  Object.keys(p).filter((k) => ["get", "put", "post", "patch", "delete"].includes(k)),
);
console.log(`ok /openapi.json is valid OpenAPI ${doc.openapi}: ${Object.keys(doc.paths).length} paths, ${operations.length} operations, every $ref resolves; ${broken.length} broken copies refused`);
