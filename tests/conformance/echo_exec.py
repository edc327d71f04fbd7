"""promptfoo's `exec:` provider for the no-cost conformance probes: prints the
rendered prompt (its first argument) and reports no cost, as a missionctl
command harness that prints only `output` does."""
import sys
print(sys.argv[1], end="")
