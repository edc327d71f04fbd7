"""A `command` harness for the conformance test: answers each case with its
`out` var, as promptfoo's echo provider answers with the rendered prompt."""
import json
import sys

case = json.load(sys.stdin)
print(json.dumps({"output": case.get("vars", {}).get("out", "")}))
