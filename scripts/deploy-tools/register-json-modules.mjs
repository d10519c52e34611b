import { register } from "node:module";
register("./json-modules.mjs", import.meta.url);
