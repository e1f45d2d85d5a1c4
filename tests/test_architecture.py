"""docs/architecture.md names, for every rule, its script and the one library function it calls:
checked here against the rule files, the scripts and the package sources (parsed, not imported)."""

import ast
import re

from conftest import ROOT

RULE = re.compile(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", re.M)
SCRIPT = re.compile(r"^\s*script:\s*\n\s*\"([^\"]+)\"", re.M)
ROW = re.compile(r"^\| [^|]+ \| `(\w+)`[^|]*\| (?:`(\w+\.py)`|—) \| (?:`([\w.]+)`|—) \|", re.M)


def rule_scripts() -> dict[str, str | None]:
    """{rule: script file name} of the Snakefile and every workflow/rules/*.smk."""
    rules = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        text = path.read_text()
        starts = [(m.start(), m.group(1)) for m in RULE.finditer(text)] + [(len(text), None)]
        for (start, name), (end, _) in zip(starts, starts[1:]):
            script = SCRIPT.search(text, start, end)
            rules[name] = script.group(1).rsplit("/", 1)[-1] if script else None
    return rules


def documented() -> dict[str, tuple[str | None, str | None]]:
    """{rule: (script, function)} of the rules table in docs/architecture.md."""
    text = (ROOT / "docs/architecture.md").read_text()
    return {m.group(1): (m.group(2), m.group(3)) for m in ROW.finditer(text)}


def called_imports(script: str) -> set[str]:
    """`module.name` of every name a workflow script imports from the package and calls."""
    tree = ast.parse((ROOT / "workflow/scripts" / script).read_text())
    imported = {alias.asname or alias.name: f"{node.module}.{alias.name}" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codeparrot")
                for alias in node.names}
    return {imported[node.func.id] for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported}


def defines(qualified: str) -> bool:
    """Whether src/ defines the top-level function `package.module.name`."""
    module, name = qualified.rsplit(".", 1)
    base = ROOT / "src" / module.replace(".", "/")
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    tree = ast.parse(source.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def test_every_rule_is_documented_with_its_script():
    rules, docs = rule_scripts(), documented()
    assert set(docs) == set(rules), "docs/architecture.md's rules table and the workflow's rules differ"
    for rule, script in rules.items():
        assert docs[rule][0] == script, f"{rule}: the docs name {docs[rule][0]}, the rule runs {script}"
        assert script is None or script == f"{rule}.py", f"{rule} runs {script}, not a script named as the rule"


def test_each_documented_function_is_the_one_its_script_calls():
    for rule, (script, function) in documented().items():
        if script is None:
            continue
        assert function in called_imports(script), f"{rule}: {script} does not call {function}"
        assert defines(function), f"{rule}: {function} is not defined in src/"
