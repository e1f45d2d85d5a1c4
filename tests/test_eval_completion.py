"""Code-completion metrics (codeparrot.eval.completion) on a real tiny GPT-2 and real Python files."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from codeparrot.clean.records import content_hash
from codeparrot.eval.completion import completion_eval, edit_similarity, has_body, next_line, parses, sample_lines


def test_sampled_lines_are_real_seeded_and_independent_of_file_order(train_fixture):
    texts = train_fixture.splits["train"]
    contents = {content_hash(t): t for t in texts}
    lines = sample_lines(contents, 10, seed=1, min_line_chars=4)
    assert len(lines) == 10 and len({s["hash"] for s in lines}) == 10  # one line per file
    for s in lines:
        text = contents[s["hash"]]
        assert text.startswith(s["prompt"] + "\n") and text[len(s["prompt"]) + 1:].split("\n")[0] == s["target"]
        assert len(s["target"].strip()) >= 4
    assert sample_lines(dict(reversed(list(contents.items()))), 10, seed=1, min_line_chars=4) == lines
    assert sample_lines(contents, 10, seed=2, min_line_chars=4) != lines


def test_scores():
    assert edit_similarity("return x", "return x") == 1.0 and edit_similarity("", "return x") == 0.0
    assert 0.5 < edit_similarity("return x + 1", "return x") < 1.0
    assert parses("def f():\n    return 1\n") and not parses("def f(:\n") and not parses("x = '\0'")
    prompt = 'def f(x):\n    """Double x."""'
    assert has_body(prompt + "\n    return 2 * x\n", "f") and has_body("def f():\n    pass", "f")
    assert not has_body(prompt, "f") and not has_body(prompt + "\n\nexplicit\n", "f")  # a docstring only
    assert not has_body(prompt + '\n    """\n    """\n    ...', "f")  # bare constants
    assert not has_body(prompt + "\ndef g(: pass", "f") and not has_body(prompt + "\n    return 1", "g")
    assert next_line("  # end\n    return x\n") == "return x" and next_line("\n") == "" and next_line("x = 1") == ""


def test_every_model_is_scored_on_the_same_prompts_deterministically(train_fixture, tmp_path):
    texts = train_fixture.splits["validation"] + train_fixture.splits["train"][:6]
    path = tmp_path / "validation-00000-of-00001.parquet"
    pq.write_table(pa.table({"hash": [content_hash(t) for t in texts], "content": texts}), path)
    settings = dict(seed=1, n_lines=6, humaneval_problems=3, line_max_new_tokens=8, humaneval_max_new_tokens=16,
                    batch_size=4)
    model = str(train_fixture.model)
    first = completion_eval({"a": model, "b": model}, [str(path)], str(tmp_path / "a.json"), **settings)
    completion_eval({"a": model}, [str(path)], str(tmp_path / "b.json"), **settings)
    a, b = first["models"]["a"], json.loads((tmp_path / "b.json").read_text())["models"]["a"]
    for key in ("lines", "exact_match", "edit_similarity", "humaneval_problems", "humaneval_body_rate"):
        assert a[key] == first["models"]["b"][key] == b[key], key
    assert a["lines"] == 6 and a["humaneval_problems"] == 3
    assert 0 <= a["exact_match"] <= a["edit_similarity"] <= 1 and 0 <= a["humaneval_body_rate"] <= 1
    example = first["line_examples"][0]
    assert example["a"] == example["b"] and "\n" not in example["a"] and example["target"]
    assert [e["task_id"] for e in first["humaneval_examples"]] == ["HumanEval/0", "HumanEval/1"]
