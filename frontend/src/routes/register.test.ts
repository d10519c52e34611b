import { describe, expect, it } from "vitest";
import { passwordProblem } from "./register";

describe("the password rule the auth service enforces", () => {
  it("wants 12 to 128 characters with a letter and a digit", () => {
    expect(passwordProblem("short1")).toBe("At least 12 characters.");
    expect(passwordProblem("a".repeat(129) + "1")).toBe("At most 128 characters.");
    expect(passwordProblem("no digits at all")).toBe("Use a letter and a digit.");
    expect(passwordProblem("123456789012")).toBe("Use a letter and a digit.");
    expect(passwordProblem("correct horse battery 9")).toBeUndefined();
  });
});
