"""PyYAML's error messages as a spec author reads them: one line, and what usually causes each mistake."""
from __future__ import annotations

import re

import yaml

# PyYAML's wording for the common mistakes, and what usually causes each.
_YAML_HINTS = [
    ("mapping values are not allowed here", "usually a value that contains ': ' and needs quotes, or a key indented "
                                            "deeper than the line before"),
    ("could not find expected ':'", "usually a line that is neither `key: value` nor `- item`, or a missing colon"),
    ("expected ',' or ']'", "usually a '[' that is not closed or a missing comma between items"),
    ("expected ',' or '}'", "usually a '{' that is not closed or a missing comma between entries"),
    ("while scanning a quoted scalar", "a quote that is not closed"),
    ("expected <block end>", "usually an indentation mistake: the keys of one mapping (and the items of one list) "
                             "must start in the same column"),
    ("did not find expected key", "usually an indentation mistake, or a list item without '- '"),
    ("did not find expected '-' indicator", "the items of one list must start in the same column"),
    ("found undefined alias", "an alias (*name) needs an anchor (&name) earlier in the file"),
    ("that cannot start any token", "quote a value that starts with this character"),
    ("found another document", "a spec is one YAML document: remove the '---' line"),
]


def yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    if "'\\t'" in problem or "\\t" in problem:
        return "tab character in indentation; YAML indents with spaces only"
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        return f"the YAML tag {name} is not allowed; a spec holds plain data only"
    context = exc.context or ""
    if problem.startswith(("but ", "second occurrence")) and context:  # PyYAML splits one sentence in two
        problem = f"{context}, {problem}"
    hint = next((text for wording, text in _YAML_HINTS if wording in problem or wording in context), "")
    if hint == "a quote that is not closed" and exc.context_mark:
        hint = f"a quote opened at line {exc.context_mark.line + 1} that is not closed"
    return f"not valid YAML: {' '.join(problem.split())}" + (f" ({hint})" if hint else "")
