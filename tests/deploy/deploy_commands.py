"""The deeplab-* command lines written in deploy/ and docs/cluster/, as argv lists.

Shell text (scripts, Dockerfile RUN/CMD, the docs' bash blocks) is split as a shell would
split it (shlex), with the file's own `NAME=${NAME:-default}` variables substituted;
strings handed to another shell (`gcloud ... --command="..."`, `sh -c "..."`) are split in
turn. Kubernetes `command:` lists are expanded as Kubernetes expands them: $(NAME) from the
container's env.
"""
import importlib.metadata
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
DOCS = os.path.join(ROOT, "docs", "cluster")

# console script -> module, as installed (setup.py's entry points)
TOOLS = {ep.name: ep.value.split(":")[0] for ep in importlib.metadata.entry_points(
    group="console_scripts") if ep.value.startswith("deeplab_tf.")}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def invocations(argv):
    """[(tool, args)] of the deeplab-* tools that `argv` runs, deeplab-launch's command too."""
    found = []
    for i, token in enumerate(argv):
        if os.path.basename(token) in TOOLS:
            tool, rest = os.path.basename(token), argv[i + 1:]
            if tool == "deeplab-launch" and "--" in rest:
                cut = rest.index("--")
                return found + [(tool, rest[:cut])] + invocations(rest[cut + 1:])
            return found + [(tool, rest)]
        if "deeplab-" in token and re.search(r"\s", token):  # a command string for a shell
            found += shell_invocations(token.split("=", 1)[-1] if token.startswith("--")
                                       else token)
    return found


def shell_invocations(text, variables=None):
    """[(tool, args)] of every deeplab-* tool run by the shell text."""
    variables = dict(variables or {})
    text = re.sub(r"\\\n", " ", text)  # continuation lines
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"(\w+)=\$\{\1:-(.*)\}", line)
        if assignment:
            variables[assignment.group(1)] = _substitute(assignment.group(2), variables)
            continue
        lexer = shlex.shlex(_substitute(line, variables), posix=True, punctuation_chars=";&|<>()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segment = []
        for token in list(lexer) + [";"]:
            if set(token) <= set(";&|<>()"):
                found += invocations(segment)
                segment = []
            else:
                segment.append(token)
    return found


def _substitute(text, variables):
    def value(match):
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))
    return re.sub(r"(?<!\\)\$(?:\{(\w+)\}|(\w+))", value, text)


def kubernetes_command(container, values=None):
    """A container's command + args with $(NAME) expanded from its env, `values` first."""
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    env.update(values or {})
    argv = list(container.get("command", [])) + list(container.get("args", []))
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in argv]


def markdown_shell_blocks(text):
    """The ```bash / ```sh / ```console blocks of a Markdown page."""
    return re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S)


def dockerfile_invocations(text):
    """[(tool, args)] of the Dockerfile's RUN lines (shell form) and CMD (exec form)."""
    import json
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "RUN":
            found += shell_invocations(rest)
        elif keyword in ("CMD", "ENTRYPOINT"):
            found += invocations(json.loads(rest))
    return found
