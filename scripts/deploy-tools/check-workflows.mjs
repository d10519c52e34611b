// Checks GitHub Actions workflows with GitHub's own parser (the one behind the Actions
// language server): schema, expressions, job graph. usage: node check-workflows.mjs FILE...
import { readFileSync } from "node:fs";
import {
  NoOperationTraceWriter,
  convertWorkflowTemplate,
  parseWorkflow,
} from "@actions/workflow-parser";

let failed = 0;
for (const name of process.argv.slice(2)) {
  const content = readFileSync(name, "utf8");
  const parsed = parseWorkflow({ name, content }, new NoOperationTraceWriter());
  if (parsed.value) {
    await convertWorkflowTemplate(parsed.context, parsed.value);
  }
  const errors = parsed.context.errors.getErrors();
  for (const error of errors) console.error(`ERROR ${name}: ${error.message}`);
  if (!parsed.value && errors.length === 0) console.error(`ERROR ${name}: not a workflow`);
  failed += errors.length + (parsed.value ? 0 : 1);
  if (errors.length === 0 && parsed.value) console.log(`${name}: valid workflow`);
}
process.exit(failed ? 1 : 0);
