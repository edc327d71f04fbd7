"""A `command` harness for the round-two conformance tables: answers each
case with its rendered user message and a cost of 0, as promptfoo's echo
provider answers with the rendered prompt (and reports cost 0)."""
import json
import sys

case = json.load(sys.stdin)
print(json.dumps({"output": case.get("user", ""), "usage": {"cost_usd": 0}}))
