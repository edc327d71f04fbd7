"""Writes probes.yaml: outputs and assertions that both promptfoo and
missionctl evaluate in tests/it/conformance.rs. Run: python3 gen_probes.py"""
import json

probes = []


def p(out, a, **kw):
    t = {"vars": {"out": out}, "assert": [a] if isinstance(a, dict) else a}
    t.update(kw)
    probes.append(t)


outs = ["hello", " hello ", "Hello World", "The Leave Policy allows 25 days.", "a, b", "x,y,z", "", "5",
        "5.0", "true", "null", "{\"a\": 1, \"b\": [1, 2]}"]
for o in outs:
    p(o, {"type": "equals", "value": "hello"})
p("5", {"type": "equals", "value": 5})
p("5.0", {"type": "equals", "value": 5})
p("true", {"type": "equals", "value": True})
p("{\"a\": 1, \"b\": [1, 2]}", {"type": "equals", "value": {"a": 1, "b": [1, 2]}})
p("{\"b\":[1.0,2],\"a\":1.0}", {"type": "equals", "value": {"a": 1, "b": [1, 2]}})
p("{\"a\": 1}", {"type": "equals", "value": {"a": "1"}})
p("[1, 2, 3]", {"type": "equals", "value": [1, 2, 3]})
p("not json", {"type": "equals", "value": {"a": 1}})
p("not json", {"type": "not-equals", "value": {"a": 1}})
p(" hello ", {"type": "not-equals", "value": "hello"})
for o in ["The Leave Policy allows 25 days.", "café Straße ÉCOLE", "emoji 😀 test", "", " hello "]:
    for a in [{"type": "contains", "value": "Policy"}, {"type": "icontains", "value": "policy"},
              {"type": "contains", "value": 25}, {"type": "not-contains", "value": "days"},
              {"type": "icontains", "value": "école"}, {"type": "not-icontains", "value": "STRASSE"}]:
        p(o, a)
for o in ["a, b", "The Leave Policy allows 25 days.", "x,y,z", "say \"hi, there\""]:
    for a in [{"type": "contains-any", "value": "x, b"}, {"type": "contains-any", "value": ["zz", "25"]},
              {"type": "contains-all", "value": "a, b"}, {"type": "contains-all", "value": "x,y,z"},
              {"type": "icontains-any", "value": "LEAVE, nope"}, {"type": "icontains-all", "value": "leave, DAYS"},
              {"type": "contains-any", "value": "\"hi, there\", q"}, {"type": "not-contains-any", "value": "q, r"},
              {"type": "not-contains-all", "value": ["a", "b"]}, {"type": "contains-all", "value": [25, "days"]}]:
        p(o, a)
for o in ["hello", " hello", "Hello World", "  leading"]:
    for a in [{"type": "starts-with", "value": "hello"}, {"type": "starts-with", "value": "Hello"},
              {"type": "not-starts-with", "value": "h"}]:
        p(o, a)
for o in ["The Leave Policy allows 25 days.", "line1\nline2", "emoji 😀 test", "abc123", "ABC"]:
    for a in [{"type": "regex", "value": "\\d+ days"}, {"type": "regex", "value": "(?<=allows )25"},
              {"type": "regex", "value": "^line2$"}, {"type": "regex", "value": "line1.line2"},
              {"type": "regex", "value": "\\w+\\d"}, {"type": "not-regex", "value": "[A-Z]{3}"},
              {"type": "regex", "value": "(a)\\1"}, {"type": "regex", "value": "^abc(?!456)"}]:
        p(o, a)
jsons = ["{\"a\": 1, \"b\": [1, 2]}", "```json\n{\"a\": 1}\n```", "Here: {\"answer\": \"yes\", \"n\": 2} done", "5",
         " {\"answer\": \"x\"} \n", "prefix {a: 1} suffix", "{\"x\": \"y\"} and {\"answer\": \"no\"}", "{\"unclosed\": 1",
         "// c\n{\"a\": 1 // note\n}", "not json", "{\"answer\": 3}"]
schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
for o in jsons:
    for a in [{"type": "is-json"}, {"type": "not-is-json"}, {"type": "is-json", "value": schema},
              {"type": "is-json", "value": "type: object\nrequired: [a]"}, {"type": "not-is-json", "value": schema},
              {"type": "contains-json"}, {"type": "not-contains-json"}, {"type": "contains-json", "value": schema},
              {"type": "not-contains-json", "value": schema}]:
        p(o, a)
for o in ["hello", "helo", "Hello World", "emoji 😀 test", "emoji test"]:
    for a in [{"type": "levenshtein", "value": "hello"}, {"type": "levenshtein", "value": "hello", "threshold": 1},
              {"type": "levenshtein", "value": "emoji test", "threshold": 1},
              {"type": "not-levenshtein", "value": "hello", "threshold": 0}]:
        p(o, a)
for o in ["Sure!  Twenty   words?", "one", "", "line1\nline2 three"]:
    for a in [{"type": "word-count", "value": 3}, {"type": "word-count", "value": {"min": 1, "max": 2}},
              {"type": "word-count", "value": {"max": 0}}, {"type": "not-word-count", "value": {"min": 2}},
              {"type": "word-count", "value": "1"}]:
        p(o, a)
two = [{"type": "contains", "value": "alpha", "weight": 3}, {"type": "contains", "value": "gamma"}]
p("alpha beta", two)
p("alpha beta", two, threshold=0.7)
p("alpha beta", two, threshold=0.8)
p("alpha beta", [{"type": "contains", "value": "gamma", "weight": 0}])
p("alpha beta", [{"type": "assert-set", "threshold": 0.5, "assert": [{"type": "contains", "value": "alpha"},
                 {"type": "contains", "value": "gamma"}]}, {"type": "contains", "value": "beta"}])
p("alpha beta", [{"type": "assert-set", "assert": [{"type": "contains", "value": "alpha"},
                 {"type": "contains", "value": "gamma"}]}, {"type": "contains", "value": "beta"}])
p("alpha beta", [{"type": "assert-set", "weight": 2, "assert": [{"type": "contains", "value": "gamma"}]},
                 {"type": "contains", "value": "beta"}], threshold=0.3)
p(" Hello ", {"type": "equals", "value": "hello", "transform": "output.trim().toLowerCase()"})
p(" Hello ", {"type": "equals", "value": "HELLO", "transform": "output.toUpperCase()"})
p(" Hello ", {"type": "starts-with", "value": "Hello"}, options={"transform": "output.trimStart()"})
for city, a in [("Paris", {"type": "contains", "value": "{{city}}"}),
                ("Rome", {"type": "contains-any", "value": ["{{city}}", "London"]}),
                ("Paris", {"type": "equals", "value": "{{ city }} is nice"})]:
    p("Paris is nice", a)
    probes[-1]["vars"]["city"] = city
for i, t in enumerate(probes):
    t["description"] = f"probe {i:03d}"
with open("probes.yaml", "w") as f:
    f.write("# Conformance probes (written by gen_probes.py): each output (vars.out) and\n"
            "# its assertions run through promptfoo and through missionctl, and the\n"
            "# verdicts must agree (tests/it/conformance.rs).\n")
    for t in probes:
        f.write("- " + json.dumps(t, ensure_ascii=False) + "\n")
print(len(probes))
